"""Cost benchmark: PUMA against its baselines on one backbone, side by side, in one run (docs/benchmarks.md).

    python benchmarks/cost.py --output benchmarks/results/cost_vits16_cpu.json --figure docs/figures/cost.png
    python benchmarks/cost.py --only inference --output benchmarks/results/cost_vits16_cpu_fused.json

For each method of the comparison (the paper's Table 2 rows, arXiv 2309.08944, plus PUMA) it measures, on a
ViT-S/16-shaped backbone with random weights (cost depends on shapes, not on weight values):

- ``trainable_params``: tensors the trainer's optimiser updates (loss proxies excluded, as in the paper);
- ``adapter_mb``: bytes of the safetensors files the trainer saves for the method (MB = 10^6 bytes);
- ``train_step_s``: one call of the trainer's own training step (``peft_puma.training.step.TrainingStep``: forward,
  CurricularFace + regulariser, backward through the accelerator, element-wise gradient clamp, AdamW and schedule
  step) at ``--train_batch_size`` images; also per image;
- ``train_peak_mb``: how far memory rises above the model at rest during training steps, in a fresh process per
  method on a CPU; also per image;
- ``infer_s``: eval-mode forward (embeddings) per image at ``--infer_batch_size``;
- ``inference_forms``: the frozen backbone, PUMA as trained and fused for inference (docs/fusion.md), LoRA unmerged
  and merged, at each of ``--form_batch_sizes``: time per image, FLOPs per image and their ratios to the frozen
  backbone, the FLOPs ratio of PUMA being the floor its fused form is measured against. ``--only inference``
  measures this part alone (a few minutes); ``--compile_forms`` adds each form under ``torch.compile`` beside its
  eager form (``benchmarks/gpu_inference.sh`` runs it on a GPU at the paper's batches).

The pieces: ``cost_models`` (shapes, methods as the trainer builds them, the trainer's step), ``cost_timing`` and
``cost_memory`` and ``cost_flops`` (how time, memory and FLOPs are measured), ``cost_measure`` (what is measured),
``cost_analysis`` (ratios,
overhead by part), ``cost_report`` (tables, figure), ``cost_records`` (the typed results and their JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from collections.abc import Sequence

import torch
from cost_analysis import checkpointing_ratios, puma_overhead, ratios
from cost_breakdown import breakdown_table, measure_breakdown
from cost_measure import (
    CostOptions,
    compiled_inference,
    measure_inference_forms,
    measure_methods,
    scaling,
)
from cost_memory import malloc_setting
from cost_models import (
    CHECKPOINTED,
    COMPONENTS,
    METHODS,
    PAPER_TRAIN_CLASSES,
    PRECISIONS,
    SHAPES,
    Runtime,
)
from cost_records import CostResult, CostSettings, InferenceFormsRow
from cost_report import markdown_table, plot, summary
from run_info import check_output, load_average, run_info
from script_options import add_option

from peft_puma.cpu_threads import configure_torch_threads
from peft_puma.owned_paths import write_json_atomically


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    option = functools.partial(add_option, parser)
    option("--output", required=True, help="JSON file to write")
    option(
        "--only",
        default="all",
        choices=("all", "inference"),
        help="inference: only the inference forms (frozen, PUMA unfused/fused, LoRA unmerged/merged), a few minutes",
    )
    option("--figure", help="PNG to draw the ratios and the scaling into")
    option("--shape", default="vit_s16", choices=sorted(SHAPES), help="backbone shape (tiny: CI)")
    option("--image_size", type=int, help="default: the shape's (224 for vit_s16)")
    option("--train_batch_size", type=int, default=8)
    option("--infer_batch_size", type=int, default=8)
    option("--num_classes", type=int, default=PAPER_TRAIN_CLASSES, help="loss proxies (paper: 15,952)")
    option("--warmup", type=int, default=2, help="rounds dropped before the timed ones")
    option("--repeats", type=int, default=7, help="timed rounds (medians are reported)")
    option("--memory_steps", type=int, default=2, help="training steps of each memory probe")
    option("--no_memory", action="store_true", help="skip the per-method peak-memory processes")
    option("--scale_image_sizes", type=int, nargs="*", default=[160, 224, 288])
    option("--scale_infer_batch_sizes", type=int, nargs="*", default=[1, 8, 32])
    option("--scale_train_batch_sizes", type=int, nargs="*", default=[4, 8, 16])
    option("--scale_repeats", type=int, default=3)
    option("--threads", type=int, help="torch intra-op threads (default: the cores this process may use)")
    option("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: synchronised timings, allocator memory")
    option("--precision", choices=sorted(PRECISIONS), help="default fp32 on a CPU, bf16 on a GPU (fp16: GPU only)")
    option(
        "--compile_methods",
        nargs="*",
        default=[],
        choices=[*METHODS, *COMPONENTS],
        help="also time these methods' inference under torch.compile, beside their eager forms (e.g. frozen puma)",
    )
    option("--compile_backend", default="inductor", help="torch.compile backend (aot_eager: no compiler)")
    option("--form_batch_sizes", type=int, nargs="*", default=[1, 8, 32], help="batches of the inference forms")
    option("--form_repeats", type=int, default=5, help="timed rounds of the inference forms (medians reported)")
    option(
        "--compile_forms",
        action="store_true",
        help="also time every inference form under torch.compile(fullgraph=True), in the same rounds as its eager "
        "form (--compile_backend, --compile_mode)",
    )
    option(
        "--compile_mode",
        choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune"),
        default="default",
        help="torch.compile mode of --compile_forms (reduce-overhead: CUDA graphs; max-autotune: kernel search)",
    )
    option(
        "--breakdown",
        nargs="*",
        default=[],
        choices=[name for name in METHODS if name != "frozen"],
        help="also split these methods' training step into its parts with torch.profiler (frozen forward, activation "
        "backward, adapters, gates, prompt pool, head and loss, optimizer; docs/cost.md), e.g. puma static_adapter "
        "full_ft",
    )
    option("--breakdown_steps", type=int, default=3, help="profiled steps per method of --breakdown (median)")
    option(
        "--torch_compile",
        action="store_true",
        help="train every method compiled, as the trainer's torch_compile does (--compile_backend, --compile_mode); "
        "the memory probes stay eager",
    )
    option("--seed", type=int, default=0)
    option("--note", help="free text kept in the result, e.g. that another job shares the cores")
    args = parser.parse_args(argv)
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    if args.precision == "fp16" and args.device != "cuda":
        parser.error("--precision fp16 needs --device cuda: accelerate scales fp16 gradients on a GPU only")
    if args.only == "inference" and (args.figure or args.compile_methods or args.breakdown):
        parser.error(
            "--figure, --compile_methods and --breakdown belong to the full run; leave them out with --only inference"
        )
    if args.compile_mode != "default" and not (args.compile_forms or args.torch_compile):
        parser.error(f"--compile_mode {args.compile_mode} applies to --compile_forms or --torch_compile; add one")
    if args.torch_compile and (args.breakdown or args.only == "inference"):
        parser.error("--torch_compile compiles the training step: it cannot be split by --breakdown (one graph), and "
                     "--only inference trains nothing")  # fmt: skip
    if args.compile_forms and not args.form_batch_sizes:
        parser.error("--compile_forms times the inference forms; give at least one --form_batch_sizes")
    return args


def cost_options(args: argparse.Namespace) -> CostOptions:
    shape = SHAPES[args.shape]
    return CostOptions(
        shape=shape,
        runtime=Runtime(args.device, args.precision),
        image_size=args.image_size or shape.image_size,
        train_batch_size=args.train_batch_size,
        infer_batch_size=args.infer_batch_size,
        num_classes=args.num_classes,
        warmup=args.warmup,
        repeats=args.repeats,
        memory_steps=args.memory_steps,
        memory=not args.no_memory,
        threads=args.threads,
        seed=args.seed,
        scale_image_sizes=tuple(args.scale_image_sizes),
        scale_infer_batch_sizes=tuple(args.scale_infer_batch_sizes),
        scale_train_batch_sizes=tuple(args.scale_train_batch_sizes),
        scale_repeats=args.scale_repeats,
        compile_methods=tuple(dict.fromkeys(args.compile_methods)),
        compile_backend=args.compile_backend,
        form_batch_sizes=tuple(args.form_batch_sizes),
        form_repeats=args.form_repeats,
        compile_forms=args.compile_forms,
        compile_mode=None if args.compile_mode == "default" else args.compile_mode,
        train_compile=args.torch_compile,
    )


def cost_settings(args: argparse.Namespace, options: CostOptions) -> CostSettings:
    """The settings block of the result: what was measured, how."""
    gpu = options.runtime.is_cuda
    scaled = " with gradient scaling" if options.runtime.precision == "fp16" else ""
    return CostSettings(
        backbone=f"{args.shape} shape, random weights" + (" (ViT-S/16)" if args.shape == "vit_s16" else ""),
        shape=dataclasses.asdict(options.shape),
        image_size=options.image_size,
        train_batch_size=options.train_batch_size,
        infer_batch_size=options.infer_batch_size,
        num_classes=options.num_classes,
        loss="curricularface",
        training_step=f"peft_puma.training.step.TrainingStep, TrainingConfig defaults, accelerate mixed_precision "
        f"{PRECISIONS[options.runtime.precision]}{scaled}",
        device=options.runtime.device,
        precision=options.runtime.precision,
        attn_implementation=options.shape.vit(options.image_size).config._attn_implementation,
        warmup=options.warmup,
        repeats=options.repeats,
        memory=(
            "rise of torch.cuda.max_memory_allocated over the allocated bytes at rest, per method in this process"
            if gpu
            else "rise of peak RSS (VmHWM, reset via /proc/self/clear_refs) over the model at rest, "
            f"fresh forkserver process per method, glibc {malloc_setting()}"
        ),
        measured=args.only,
        form_batch_sizes=list(options.form_batch_sizes),
        form_repeats=options.form_repeats,
        form_compile=(
            f"torch.compile(fullgraph=True, backend={options.compile_backend!r}, mode={options.compile_mode!r})"
            if options.compile_forms
            else None
        ),
        training_compile=(
            f"compile_for_training(backend={options.compile_backend!r}, mode={options.compile_mode!r}); memory probes "
            "eager"
            if options.train_compile
            else None
        ),
    )


def measure(options: CostOptions, args: argparse.Namespace) -> CostResult:
    """Every measurement and what follows from it; with ``--only inference`` the inference forms alone."""
    info = run_info(options.threads)
    start = time.perf_counter()
    if args.only == "inference":
        return CostResult(
            run=info,
            settings=cost_settings(args, options),
            **dict.fromkeys(_FULL_RUN_PARTS),
            inference_forms=_inference_forms(options),
            load_average_end=load_average(),
            elapsed_s=time.perf_counter() - start,
            note=args.note,
        )
    compiled = None
    if options.compile_methods:  # first: a backend that cannot compile here fails before the long measurements
        print(f"timing compiled inference ({options.compile_backend})", file=sys.stderr)
        compiled = compiled_inference(options)
    breakdown = None
    if args.breakdown:
        print(f"profiling the training step of {', '.join(args.breakdown)}", file=sys.stderr)
        breakdown = measure_breakdown(options, tuple(dict.fromkeys(args.breakdown)), args.breakdown_steps)
    rows = measure_methods(options)
    methods = {name: rows[name] for name in METHODS}
    scaled = None
    if options.scales:
        print("measuring scaling with image and batch size", file=sys.stderr)
        scaled = scaling(options)
    return CostResult(
        run=info,
        settings=cost_settings(args, options),
        methods=methods,
        components={name: rows[name] for name in COMPONENTS},
        activation_checkpointing={name: rows[name] for name in CHECKPOINTED},
        ratios=ratios(methods),
        checkpointing_ratios=checkpointing_ratios(rows),
        puma_overhead=puma_overhead(rows),
        scaling=scaled,
        compiled_inference=compiled,
        inference_forms=_inference_forms(options),
        load_average_end=load_average(),
        elapsed_s=time.perf_counter() - start,
        note=args.note,
        step_breakdown=breakdown,
    )


# What --only inference leaves unmeasured (None in the result).
_FULL_RUN_PARTS = (
    "methods",
    "components",
    "activation_checkpointing",
    "ratios",
    "checkpointing_ratios",
    "puma_overhead",
    "scaling",
    "compiled_inference",
)


def _inference_forms(options: CostOptions) -> list[InferenceFormsRow] | None:
    if not options.form_batch_sizes:
        return None
    print(f"timing inference forms at batches {list(options.form_batch_sizes)}", file=sys.stderr)
    return measure_inference_forms(options)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output)  # before minutes of measuring
    args.threads = args.threads or configure_torch_threads()
    torch.set_num_threads(args.threads)
    result = measure(cost_options(args), args)
    write_json_atomically(args.output, result.to_json())
    if args.figure:
        plot(result, args.figure)
    print(markdown_table(result))
    if result.step_breakdown:
        print("\n".join(["", *breakdown_table(result.step_breakdown, result.settings.train_batch_size)]))
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
