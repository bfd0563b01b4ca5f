"""PUMA's gated adapters in their two training forms, side by side in one run (docs/cost.md, "Training: the gated
adapters"):

    python benchmarks/gate_forms.py --output benchmarks/results/gate_forms_cpu.json

- **kept rows** (the default since kept_rows.py): each stochastic adapter gathers the samples its gate keeps and runs
  its bottleneck on those alone;
- **masked**: every sample's bottleneck computed, then multiplied by its gate (zero for the dropped ones), as before.

Both give the same values and gradients (tests/tuners/test_kept_rows.py), so only their cost differs, and it differs
by shape: gathering and scattering rows costs memory traffic in proportion to ``B x T x d``, while the work saved is
``B x T x d x r`` multiply-adds. Each setting builds PUMA twice on copies of one seeded backbone, one of them switched
to the masked form, and times the trainer's own step (``training_step`` of cost_models.py: recipe loss, AdamW, clamp)
in interleaved rounds, so that a change of machine speed hits both forms alike. Settings: the README main job's shape
(``configs/uml_mini.yaml``'s backbone: d 128, 4 layers, 32 px images in patches of 4, r 32, batch 64) and ViT-S/16
(d 384, 12 layers, 224 px, r 128) at batches 8 and 32.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch
from cost_memory import peak_rise_mb
from cost_models import BackboneShape, Runtime, make_batch, recipe, training_step
from cost_timing import interleaved_timings, train_task
from run_info import check_output, load_average, run_info
from script_options import add_option

from peft_puma.owned_paths import write_json_atomically
from peft_puma.training.methods import MethodOptions, build_model
from peft_puma.tuners.puma.layer import StochasticAdapter

# name -> (backbone shape, adapter width r, training batches, CurricularFace proxies)
SETTINGS: dict[str, tuple[BackboneShape, int, tuple[int, ...], int]] = {
    "main_job": (BackboneShape(128, 4, 4, 512, 4, 32), 32, (64,), 2_000),
    "vit_s16": (BackboneShape(), 128, (8, 32), 15_952),
}
FORMS = ("kept_rows", "masked")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_option(parser, "--output", help="JSON results file (required)")
    add_option(parser, "--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), help="shapes to run")
    add_option(parser, "--warmup", type=int, default=2, help="rounds dropped before the timed ones")
    add_option(parser, "--repeats", type=int, default=9, help="timed rounds (medians reported)")
    add_option(parser, "--threads", type=int, default=2, help="torch intra-op threads")
    add_option(
        parser,
        "--memory_only",
        action="store_true",
        help="measure each form's peak training memory instead of its time (a fresh process per form and batch)",
    )
    add_option(parser, "--probe", default=None, help=argparse.SUPPRESS)  # the child process of --memory_only
    args = parser.parse_args(argv)
    if not args.output and not args.probe:
        parser.error("--output is required")
    return args


def masked_form(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every stochastic adapter computing all samples, then multiplying by the gate (the old form)."""

    def add_masked(adapter: StochasticAdapter, branch_output, branch_input, adapter_name):
        return branch_output + adapter.adapter_output(branch_input, adapter_name).to(branch_output.dtype)

    switched = 0
    for module in model.modules():
        if isinstance(module, StochasticAdapter):
            module.add_adapter_output = add_masked.__get__(module)
            switched += 1
    if not switched:
        raise RuntimeError("the model has no stochastic adapter to switch")
    return model


def puma_model(shape: BackboneShape, r: int) -> torch.nn.Module:
    config = dataclasses.replace(recipe(), puma={"r": r}).for_method("puma")
    return build_model("puma", shape.vit(seed=0), MethodOptions.from_config(config))


def measure(name: str, args: argparse.Namespace, runtime: Runtime) -> list[dict[str, Any]]:
    shape, r, batches, proxies = SETTINGS[name]
    rows = []
    for batch in batches:
        base = puma_model(shape, r)
        models = {"kept_rows": base, "masked": masked_form(copy.deepcopy(base))}
        steps = {form: training_step(model, proxies, runtime) for form, model in models.items()}
        pixels, labels = make_batch(batch, shape.image_size, proxies, 2)
        tasks = {form: train_task(step, pixels, labels) for form, step in steps.items()}
        timings = interleaved_timings(tasks, args.warmup, args.repeats, runtime)
        walls = {form: timings[form].wall_s for form in FORMS}  # medians of the timed rounds
        cpus = {form: timings[form].cpu_s for form in FORMS}
        row = {
            "setting": name,
            "hidden_size": shape.hidden_size,
            "layers": shape.num_layers,
            "tokens": shape.tokens(shape.image_size),
            "r": r,
            "batch": batch,
            "step_wall_s": walls,
            "step_cpu_s": cpus,
            "step_wall_samples_s": {form: timings[form].wall_samples_s for form in FORMS},
            "kept_over_masked_wall": walls["kept_rows"] / walls["masked"],
            "kept_over_masked_cpu": cpus["kept_rows"] / cpus["masked"],
        }
        rows.append(row)
        print(f"{name} batch {batch}: kept rows {walls['kept_rows']:.3f} s, masked {walls['masked']:.3f} s "
              f"({row['kept_over_masked_wall']:.3f}x)", file=sys.stderr)  # fmt: skip
        del models, steps, tasks
    return rows


def probe_memory(request: str) -> dict[str, float]:
    """(In a fresh process.) The form's model and training step built, then 2 steps: how far the process's peak
    resident memory rises above what it held before them (cost_memory.peak_rise_mb: the peak reset first, so the
    building's own peak does not count), the same for both forms but for what the adapters keep."""
    asked = json.loads(request)
    shape, r, _, proxies = SETTINGS[asked["setting"]]
    model = puma_model(shape, r)
    if asked["form"] == "masked":
        model = masked_form(model)
    runtime = Runtime()
    step = training_step(model, proxies, runtime)
    pixels, labels = make_batch(asked["batch"], shape.image_size, proxies, 2)
    return {"above_mb": peak_rise_mb(lambda: [step(pixels, labels) for _ in range(2)], runtime)}


def measure_memory(name: str, threads: int) -> list[dict[str, Any]]:
    shape, r, batches, _ = SETTINGS[name]
    rows = []
    for batch in batches:
        row: dict[str, Any] = {"setting": name, "r": r, "batch": batch}
        for form in FORMS:
            request = json.dumps({"setting": name, "batch": batch, "form": form})
            command = [sys.executable, os.path.abspath(__file__), "--probe", request, "--threads", str(threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row[form] = json.loads(done.stdout.strip().splitlines()[-1])
        row["kept_minus_masked_above_mb"] = row["kept_rows"]["above_mb"] - row["masked"]["above_mb"]
        print(f"{name} batch {batch}: training adds {row['kept_rows']['above_mb']:.0f} MB (kept rows), "
              f"{row['masked']['above_mb']:.0f} MB (masked)", file=sys.stderr)  # fmt: skip
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.probe:
        print(json.dumps(probe_memory(args.probe)))
        return 0
    check_output(args.output)
    runtime = Runtime()
    result = {"benchmark": "gate_forms", **run_info(torch_threads=args.threads)}
    if args.memory_only:
        result["rows"] = [row for name in args.settings for row in measure_memory(name, args.threads)]
        result["load_average_end"] = load_average()
        write_json_atomically(args.output, result)
        return 0
    result["warmup"], result["repeats"] = args.warmup, args.repeats
    result["rows"] = [row for name in args.settings for row in measure(name, args, runtime)]
    result["load_average_end"] = load_average()
    write_json_atomically(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
