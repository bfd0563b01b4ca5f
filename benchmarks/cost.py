"""Cost benchmark: PUMA against its baselines on one backbone, side by side, in one run (issue 6, part 1).

    python benchmarks/cost.py --output benchmarks/results/cost_vits16_cpu.json --figure docs/figures/cost.png

For each method of the comparison (the paper's Table 2 rows plus PUMA) it measures, on a ViT-S/16-shaped backbone with
random weights (cost depends on shapes, not on weight values):

- ``trainable_params``: tensors the trainer's optimiser updates (loss proxies excluded, as in the paper);
- ``adapter_mb``: bytes of the safetensors files the trainer saves for the method (MB = 10^6 bytes);
- ``train_step_s``: one training step of the trainer (forward, CurricularFace + regulariser, backward, element-wise
  gradient clamp, AdamW step) at ``--train_batch_size`` images; also per image;
- ``train_peak_mb``: how far the process's resident memory rises above the model at rest during training steps, in a
  fresh process per method (see :func:`probe_memory`); also per image;
- ``infer_s``: eval-mode forward (embeddings) per image at ``--infer_batch_size``.

Every model is built by the training package's methods table (``peft_puma.training.methods``), so the benchmark
measures what ``python -m peft_puma.train --method NAME`` trains. Timings are medians over ``--repeats`` rounds after
``--warmup`` rounds; within a round the methods run one after the other in a shuffled order, so a change of load on the
shared cores hits every method alike instead of the one that happened to run then. The output JSON also holds the
ratios to the frozen forward and to full fine-tuning, the share of PUMA's overhead due to its prompts and to its
adapters, how the cost grows with image size and batch size, the machine, the versions and the load average. With
``--compile_methods`` it also times those methods' inference under ``torch.compile`` beside their eager forms.
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft_puma.cpu_threads import configure_torch_threads
from peft_puma.errors import ForeignContentError
from peft_puma.owned_paths import check_json_output, write_json_atomically

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from method_names import BENCHMARK_METHODS  # noqa: E402  (a script: its sibling module is on the path above)
from run_info import load_average, run_info  # noqa: E402

METHODS = BENCHMARK_METHODS
# PUMA with one of its two parts removed: their extra cost over the frozen model splits PUMA's overhead by part.
COMPONENTS: dict[str, str] = {"prompts_only": "conditional_prompt", "adapters_only": "stochastic_adapter"}
# PUMA and full fine-tuning trained with activation checkpointing (the trainer's `activation_checkpointing: true`):
# every method backpropagates through the whole backbone, so kept activations dominate training memory; these rows
# show what recomputing them costs in time and saves in memory, for both sides of the memory target.
CHECKPOINTED: dict[str, str] = {"puma_checkpointed": "puma", "full_ft_checkpointed": "full_ft"}
PAPER_TRAIN_CLASSES = 15_952  # proxies of CurricularFace on the full 8-dataset union (docs/data.md)
MB = 1e6
MMAP_THRESHOLD = 128 * 1024  # bytes; see memory_by_method
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Where the models run and under which autocast, as the trainer's accelerator sets it (fp32 on CPU; bf16 or
    fp16 autocast on a GPU, the loss always in fp32)."""

    device: str = "cpu"
    precision: str = "fp32"

    @property
    def is_cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    def autocast(self) -> Any:
        dtype = PRECISIONS[self.precision]
        return torch.autocast(torch.device(self.device).type, dtype=dtype, enabled=dtype is not None)

    def synchronize(self) -> None:
        """Wait for queued GPU work, so that a timer measures it (nothing to wait for on a CPU)."""
        if self.is_cuda:
            torch.cuda.synchronize()


@dataclass(frozen=True)
class BackboneShape:
    """A ViT's shape; the weights are random (seeded), which does not change the cost of any operation."""

    hidden_size: int = 384
    num_layers: int = 12
    num_heads: int = 6
    intermediate_size: int = 1536
    patch_size: int = 16
    image_size: int = 224

    def vit(self, image_size: int | None = None, seed: int = 0) -> nn.Module:
        from transformers import ViTConfig, ViTModel

        config = ViTConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            patch_size=self.patch_size,
            image_size=image_size or self.image_size,
            qkv_bias=True,
            layer_norm_eps=1e-6,
        )
        torch.manual_seed(seed)
        return ViTModel(config, add_pooling_layer=False).eval()


SHAPES: dict[str, BackboneShape] = {
    "vit_s16": BackboneShape(),  # the paper's ViT-S/16 at 224 px (22M parameters)
    "tiny": BackboneShape(64, 2, 2, 128, 8, 32),  # CI smoke runs: seconds, same code paths
}


# ---------------------------------------------------------------------------------------------------- models
def build_method(name: str, backbone: nn.Module, device: str = "cpu") -> nn.Module:
    """The model the trainer would train for benchmark method ``name`` (on ``backbone``, modified in place); a
    ``CHECKPOINTED`` name gives its method with activation checkpointing on."""
    from peft_puma.training.methods import MethodOptions, build_model

    checkpointed = name in CHECKPOINTED
    method = {**METHODS, **COMPONENTS}[CHECKPOINTED.get(name, name)]
    if method is None:
        return backbone.requires_grad_(False).to(device)
    model = build_model(method, backbone, MethodOptions(puma={}), activation_checkpointing=checkpointed)
    return model.to(device)


def embed(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Retrieval embeddings: PUMA's head output, or for the bare backbone its L2-normalised final CLS (zero-shot)."""
    output = model(pixel_values=pixel_values)
    if hasattr(output, "embeddings"):
        return output.embeddings
    return F.normalize(output.last_hidden_state[:, 0], dim=-1)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_megabytes(model: nn.Module) -> float:
    """Size of the weight files ``save_trained`` writes for this method (adapter, LoRA tensors or a whole backbone)."""
    from peft_puma.training.methods import save_trained

    if not hasattr(model, "peft_config"):
        return 0.0  # the frozen backbone: nothing to save
    with tempfile.TemporaryDirectory() as folder:
        save_trained(model, folder)
        return sum(
            os.path.getsize(os.path.join(root, name)) / MB
            for root, _, names in os.walk(folder)
            for name in names
            if name.endswith(".safetensors")
        )


class TrainStep:
    """One optimiser step of ``peft_puma.training.loop`` on a fixed batch, built from the trainer's own parts.

    The trainer's ``RetrievalObjective`` (model + loss, regulariser), its parameter groups and AdamW with the recipe's
    learning-rate multipliers, and the element-wise gradient clamp: the same work per step as ``train()`` on one
    process in fp32 (the CPU default), minus data loading and logging.
    """

    def __init__(self, model: nn.Module, num_classes: int, runtime: Runtime = Runtime()) -> None:
        from peft_puma.losses import make_loss
        from peft_puma.training.arguments import TrainingConfig
        from peft_puma.training.methods import parameter_groups
        from peft_puma.training.optim import build_optimizer
        from peft_puma.training.step import RetrievalObjective

        recipe = TrainingConfig()  # the published defaults of method.md section 6
        loss = make_loss(
            recipe.loss, num_classes=num_classes, embedding_size=model.peft_config["default"].embedding_size
        )
        self.objective = RetrievalObjective(model, loss.to(runtime.device)).train()
        self.runtime = runtime
        groups = parameter_groups(model)
        groups["proxies"] = [p for p in loss.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(
            groups,
            learning_rate=recipe.learning_rate,
            lr_multipliers=recipe.lr_multipliers,
            weight_decay=recipe.weight_decay,
            betas=recipe.adam_betas,
            eps=recipe.adam_eps,
        )
        self.trainable = [p for params in groups.values() for p in params]
        self.grad_clamp = recipe.grad_clamp

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> float:
        with self.runtime.autocast():
            metric_loss, regulariser = self.objective(pixel_values, labels)
        loss = metric_loss.float() + regulariser.float()
        loss.backward()
        torch.nn.utils.clip_grad_value_(self.trainable, self.grad_clamp)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def make_batch(
    batch_size: int, image_size: int, num_classes: int, seed: int, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return pixels.to(device), labels.to(device)


# ---------------------------------------------------------------------------------------------------- timing
def interleaved_timings(
    tasks: dict[str, Callable[[], Any]], warmup: int, repeats: int, runtime: Runtime = Runtime(), seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Wall and CPU seconds of every task: ``warmup + repeats`` rounds, each running all tasks in a fresh random
    order; the warm-up rounds are dropped. Returns per task the median wall and CPU time and the wall samples."""
    order = list(tasks)
    rng = random.Random(seed)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in tasks}
    for round_index in range(warmup + repeats):
        rng.shuffle(order)
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            tasks[name]()
            runtime.synchronize()
            measured = (time.perf_counter() - wall, time.process_time() - cpu)
            if round_index >= warmup:
                samples[name].append(measured)
    return {
        name: {
            "wall_s": statistics.median(w for w, _ in values),
            "cpu_s": statistics.median(c for _, c in values),
            "wall_samples_s": [round(w, 5) for w, _ in values],
        }
        for name, values in samples.items()
    }


def train_task(step: TrainStep, pixel_values: torch.Tensor, labels: torch.Tensor) -> Callable[[], Any]:
    return lambda: step(pixel_values, labels)


def inference_task(model: nn.Module, pixel_values: torch.Tensor, runtime: Runtime = Runtime()) -> Callable[[], Any]:
    model.eval()

    def run() -> None:
        with torch.inference_mode(), runtime.autocast():
            embed(model, pixel_values)

    return run


# ---------------------------------------------------------------------------------------------------- memory
def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM, and getrusage's ru_maxrss) to the current RSS."""
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
        handle.write("5")


def _peak_rise_mb(work: Callable[[], Any], runtime: Runtime) -> float:
    """MB by which the peak during ``work`` exceeds the memory in use just before it: the process's resident set on
    a CPU, the caching allocator's allocated bytes on a GPU (exact, so no separate process is needed there)."""
    if runtime.is_cuda:
        runtime.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        work()
        runtime.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / MB
    _reset_peak_rss()
    before = _proc_status_kib("VmRSS")
    work()
    # The kernel updates VmRSS and VmHWM from per-thread counters with a small lag: a rise of zero can read as a few
    # hundred KB below zero.
    return max(0.0, (_proc_status_kib("VmHWM") - before) * 1024 / MB)


def _in_use_mb(runtime: Runtime) -> float:
    return torch.cuda.memory_allocated() / MB if runtime.is_cuda else _proc_status_kib("VmRSS") * 1024 / MB


def probe_memory(settings: dict[str, Any]) -> dict[str, float]:
    """Peak memory of one method, run in a process of its own (forked from a server that only imported modules).

    After the model and the batch exist and one inference batch has set up the math libraries, the peak-RSS counter
    is reset; the rise of the peak over the resident set at that moment is what inference (two batches) adds. Then
    the loss and the optimiser are built, the counter is reset again, and the rise during ``memory_steps`` training
    steps (the first of which allocates AdamW's state) is what training adds: activations kept for backward,
    gradients, optimiser state, temporaries. A fresh process per method keeps the heap another method left behind
    from hiding or inflating that rise.
    """
    torch.set_num_threads(settings["threads"])
    runtime = Runtime(settings["device"], settings["precision"])
    shape = BackboneShape(**settings["shape"])
    model = build_method(settings["method"], shape.vit(settings["image_size"]), runtime.device)
    infer_pixels, _ = make_batch(settings["infer_batch_size"], settings["image_size"], 1, 1, runtime.device)
    infer = inference_task(model, infer_pixels, runtime)
    infer()  # one-time set-up of the math libraries (oneDNN/MKL buffers) is not the model's inference cost
    result = {"rss_at_rest_mb": _in_use_mb(runtime)}
    result["infer_peak_mb"] = _peak_rise_mb(lambda: (infer(), infer()), runtime)
    if settings["method"] != "frozen":  # the zero-shot backbone is not trained
        step = TrainStep(model, settings["num_classes"], runtime)
        size, classes = settings["train_batch_size"], settings["num_classes"]
        pixels, labels = make_batch(size, settings["image_size"], classes, 2, runtime.device)
        steps = settings["memory_steps"]
        result["train_peak_mb"] = _peak_rise_mb(lambda: [step(pixels, labels) for _ in range(steps)], runtime)
        result["train_peak_rss_mb"] = (
            torch.cuda.max_memory_allocated() / MB if runtime.is_cuda else _proc_status_kib("VmHWM") * 1024 / MB
        )
    return result


def memory_by_method(names: Sequence[str], settings: dict[str, Any]) -> dict[str, dict[str, float]]:
    """:func:`probe_memory` for every method, each in a fresh process of a forkserver that has the imports done (on
    a GPU in this process, one method after the other: the allocator's statistics are exact)."""
    if torch.device(settings["device"]).type == "cuda":
        results = {name: probe_memory({**settings, "method": name}) for name in names}
        torch.cuda.empty_cache()
        return results
    # glibc raises its mmap threshold each time a large block is freed, after which freed tensors stay in the heap and
    # the peak RSS depends on what ran before (measured: +-100 MB between identical runs). A fixed threshold gives every
    # tensor of 128 KiB or more its own mapping, returned on free, so the RSS follows the live tensors (reproducible to
    # 1 MB). Set in the environment the forkserver, and so every probe process, starts with.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "peft", "peft_puma.training", "peft_puma.losses"])
    results = {}
    for name in names:
        with context.Pool(1, maxtasksperchild=1) as pool:
            results[name] = pool.apply(probe_memory, ({**settings, "method": name},))
    return results


# ---------------------------------------------------------------------------------------------------- the run
def measure_methods(args: argparse.Namespace, shape: BackboneShape) -> dict[str, Any]:
    """Every measurement at the main setting (``--image_size``, batch sizes): all methods and PUMA's components."""
    rt = Runtime(args.device, args.precision)
    inferred = list(METHODS) + list(COMPONENTS)  # activation checkpointing changes training only
    names = inferred + list(CHECKPOINTED)
    base = shape.vit(args.image_size, seed=args.seed)
    models = {name: build_method(name, copy.deepcopy(base), rt.device) for name in names}
    static = {}
    for name, model in models.items():
        method = {**METHODS, **COMPONENTS}[CHECKPOINTED.get(name, name)]
        static[name] = {"trainer_method": method, "trainable_params": count_trainable(model)}
        static[name]["activation_checkpointing"] = name in CHECKPOINTED
        static[name]["adapter_mb"] = adapter_megabytes(model)
    lora_base = models["lora"].get_base_model()
    static["lora"]["lora_rank"] = lora_base.peft_config["lora"].r

    print(f"timing inference: {len(inferred)} models x ({args.warmup} + {args.repeats}) rounds", file=sys.stderr)
    infer_pixels, _ = make_batch(args.infer_batch_size, args.image_size, 1, 1, rt.device)
    infer = interleaved_timings(
        {name: inference_task(models[name], infer_pixels, rt) for name in inferred}, args.warmup, args.repeats, rt
    )
    print(f"timing training: {len(names) - 1} models", file=sys.stderr)
    pixels, labels = make_batch(args.train_batch_size, args.image_size, args.num_classes, 2, rt.device)
    steps = {name: TrainStep(model, args.num_classes, rt) for name, model in models.items() if name != "frozen"}
    train = interleaved_timings(
        {name: train_task(step, pixels, labels) for name, step in steps.items()}, args.warmup, args.repeats, rt
    )
    del steps, models

    memory = {}
    if not args.no_memory:
        print(f"measuring peak memory: {len(names)} fresh processes", file=sys.stderr)
        memory = memory_by_method(names, _probe_settings(args, shape))
    results = {}
    for name in names:
        entry = dict(static[name])
        if name in infer:
            entry["infer_s"] = infer[name]["wall_s"] / args.infer_batch_size
            entry["infer_cpu_s"] = infer[name]["cpu_s"] / args.infer_batch_size
            entry["infer_images_per_s"] = 1.0 / entry["infer_s"]
            entry["infer_wall_samples_s"] = infer[name]["wall_samples_s"]
        if name in train:
            entry["train_step_s"] = train[name]["wall_s"]
            entry["train_step_s_per_image"] = train[name]["wall_s"] / args.train_batch_size
            entry["train_step_cpu_s"] = train[name]["cpu_s"]
            entry["train_wall_samples_s"] = train[name]["wall_samples_s"]
        else:  # the zero-shot backbone is not trained
            entry.update(train_step_s=None, train_step_s_per_image=None, train_step_cpu_s=None)
        if name in memory:
            if name in infer:
                entry["infer_peak_mb"] = memory[name]["infer_peak_mb"]
            entry["rss_at_rest_mb"] = memory[name]["rss_at_rest_mb"]
            entry["train_peak_mb"] = memory[name].get("train_peak_mb")
            entry["train_peak_mb_per_image"] = (
                None if entry["train_peak_mb"] is None else entry["train_peak_mb"] / args.train_batch_size
            )
            entry["train_peak_rss_mb"] = memory[name].get("train_peak_rss_mb")
        results[name] = entry
    return results


def _probe_settings(args: argparse.Namespace, shape: BackboneShape) -> dict[str, Any]:
    return {
        "shape": asdict(shape),
        "image_size": args.image_size,
        "infer_batch_size": args.infer_batch_size,
        "train_batch_size": args.train_batch_size,
        "num_classes": args.num_classes,
        "memory_steps": args.memory_steps,
        "threads": args.threads,
        "device": args.device,
        "precision": args.precision,
    }


def ratios(methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each method against the frozen forward (inference) and against full fine-tuning (everything)."""

    def ratio(name: str, key: str, reference: str) -> float | None:
        value, base = methods[name].get(key), methods[reference].get(key)
        return None if value is None or not base else value / base

    return {
        name: {
            "infer_vs_frozen": ratio(name, "infer_s", "frozen"),
            "infer_vs_full_ft": ratio(name, "infer_s", "full_ft"),
            "train_step_vs_full_ft": ratio(name, "train_step_s", "full_ft"),
            "train_peak_vs_full_ft": ratio(name, "train_peak_mb", "full_ft"),
            "trainable_vs_full_ft": ratio(name, "trainable_params", "full_ft"),
            "adapter_mb_vs_full_ft": ratio(name, "adapter_mb", "full_ft"),
        }
        for name in methods
    }


def checkpointing_ratios(measured: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Training time and peak memory with activation checkpointing, against full fine-tuning with and without it."""

    def ratio(name: str, key: str, reference: str) -> float | None:
        value, base = measured[name].get(key), measured[reference].get(key)
        return None if value is None or not base else value / base

    return {
        "puma_checkpointed_train_step_vs_puma": ratio("puma_checkpointed", "train_step_s", "puma"),
        "puma_checkpointed_train_peak_vs_puma": ratio("puma_checkpointed", "train_peak_mb", "puma"),
        "puma_checkpointed_train_step_vs_full_ft": ratio("puma_checkpointed", "train_step_s", "full_ft"),
        "puma_checkpointed_train_peak_vs_full_ft": ratio("puma_checkpointed", "train_peak_mb", "full_ft"),
        "both_checkpointed_train_step_puma_vs_full_ft": ratio(
            "puma_checkpointed", "train_step_s", "full_ft_checkpointed"
        ),
        "both_checkpointed_train_peak_puma_vs_full_ft": ratio(
            "puma_checkpointed", "train_peak_mb", "full_ft_checkpointed"
        ),
    }


def puma_overhead(measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Where PUMA's extra cost comes from, from the measured PUMA-without-a-part models.

    Inference: extra time over the frozen forward of PUMA, of prompts only (no adapters) and of adapters only (no
    prompts); training: the same over the linear head (frozen forward + head training). The two shares need not add
    up to 1: with both parts the adapters also process the prompt tokens, and timings carry noise.
    """
    result = {}
    for phase, key, reference in (("inference", "infer_s", "frozen"), ("training", "train_step_s", "linear")):
        base = measured[reference][key]
        total = measured["puma"][key] - base
        prompts = measured["prompts_only"][key] - base
        adapters = measured["adapters_only"][key] - base
        result[phase] = {
            "reference": reference,
            "puma_extra_s": total,
            "prompts_extra_s": prompts,
            "adapters_extra_s": adapters,
            "prompts_share": prompts / total if total > 0 else None,
            "adapters_share": adapters / total if total > 0 else None,
        }
    return result


def scaling(args: argparse.Namespace, shape: BackboneShape) -> dict[str, list[dict[str, Any]]]:
    """How inference and training cost of the frozen model, PUMA and full fine-tuning grow with image size and batch."""
    rt = Runtime(args.device, args.precision)
    out: dict[str, list[dict[str, Any]]] = {"image_size": [], "infer_batch_size": [], "train_batch_size": []}
    names = ("frozen", "puma", "full_ft")
    for image_size in args.scale_image_sizes:
        base = shape.vit(image_size, seed=args.seed)
        models = {name: build_method(name, copy.deepcopy(base), rt.device) for name in names}
        pixels, labels = make_batch(args.infer_batch_size, image_size, args.num_classes, 1, rt.device)
        infer = interleaved_timings(
            {n: inference_task(m, pixels, rt) for n, m in models.items()}, 1, args.scale_repeats, rt
        )
        pixels, labels = make_batch(args.train_batch_size, image_size, args.num_classes, 2, rt.device)
        steps = {n: TrainStep(m, args.num_classes, rt) for n, m in models.items() if n != "frozen"}
        train = interleaved_timings(
            {n: train_task(s, pixels, labels) for n, s in steps.items()}, 1, args.scale_repeats, rt
        )
        row: dict[str, Any] = {"image_size": image_size, "tokens": (image_size // shape.patch_size) ** 2 + 1}
        for name in names:
            row[f"{name}_infer_s"] = infer[name]["wall_s"] / args.infer_batch_size
        for name in steps:
            row[f"{name}_train_step_s_per_image"] = train[name]["wall_s"] / args.train_batch_size
        row["puma_infer_vs_frozen"] = row["puma_infer_s"] / row["frozen_infer_s"]
        row["puma_train_vs_full_ft"] = row["puma_train_step_s_per_image"] / row["full_ft_train_step_s_per_image"]
        out["image_size"].append(row)
    base = shape.vit(args.image_size, seed=args.seed)
    models = {name: build_method(name, copy.deepcopy(base), rt.device) for name in names}
    for batch_size in args.scale_infer_batch_sizes:
        pixels, _ = make_batch(batch_size, args.image_size, 1, 1, rt.device)
        infer = interleaved_timings(
            {n: inference_task(m, pixels, rt) for n, m in models.items()}, 1, args.scale_repeats, rt
        )
        row = {"batch_size": batch_size, **{f"{n}_infer_s": infer[n]["wall_s"] / batch_size for n in names}}
        row["puma_infer_vs_frozen"] = row["puma_infer_s"] / row["frozen_infer_s"]
        out["infer_batch_size"].append(row)
    steps = {n: TrainStep(m, args.num_classes, rt) for n, m in models.items() if n != "frozen"}
    for batch_size in args.scale_train_batch_sizes:
        pixels, labels = make_batch(batch_size, args.image_size, args.num_classes, 2, rt.device)
        train = interleaved_timings(
            {n: train_task(s, pixels, labels) for n, s in steps.items()}, 1, args.scale_repeats, rt
        )
        row = {
            "batch_size": batch_size,
            **{f"{n}_train_step_s_per_image": train[n]["wall_s"] / batch_size for n in steps},
        }
        row["puma_train_vs_full_ft"] = row["puma_train_step_s_per_image"] / row["full_ft_train_step_s_per_image"]
        out["train_batch_size"].append(row)
    return out


def compiled_inference(args: argparse.Namespace, shape: BackboneShape) -> dict[str, dict[str, Any]]:
    """Inference of ``--compile_methods`` under ``torch.compile`` (``--compile_backend``), timed in the same rounds as
    their eager forms: what compiling buys each method, and PUMA's ratio to the frozen model when both are compiled.
    The first call compiles (after a reset of dynamo's caches, so that nothing compiled before is reused); its time is
    ``compile_s``, the first-call time, not part of the timed rounds."""
    rt = Runtime(args.device, args.precision)
    base = shape.vit(args.image_size, seed=args.seed)
    pixels, _ = make_batch(args.infer_batch_size, args.image_size, 1, 1, rt.device)
    tasks: dict[str, Callable[[], Any]] = {}
    compile_s: dict[str, float] = {}
    for name in args.compile_methods:
        model = build_method(name, copy.deepcopy(base), rt.device)
        tasks[name] = inference_task(model, pixels, rt)
        torch._dynamo.reset()
        compiled = inference_task(torch.compile(model, backend=args.compile_backend, fullgraph=True), pixels, rt)
        start = time.perf_counter()
        compiled()
        rt.synchronize()
        compile_s[name] = time.perf_counter() - start
        tasks[f"{name} (compiled)"] = compiled
    timings = interleaved_timings(tasks, args.warmup, args.repeats, rt)
    out: dict[str, dict[str, Any]] = {}
    for name in args.compile_methods:
        eager, compiled = (timings[key]["wall_s"] / args.infer_batch_size for key in (name, f"{name} (compiled)"))
        out[name] = {
            "backend": args.compile_backend,
            "compile_s": compile_s[name],
            "eager_infer_s": eager,
            "compiled_infer_s": compiled,
            "compiled_speedup": eager / compiled,
            "compiled_wall_samples_s": timings[f"{name} (compiled)"]["wall_samples_s"],
        }
    if "frozen" in out:
        for entry in out.values():
            entry["compiled_vs_frozen_compiled"] = entry["compiled_infer_s"] / out["frozen"]["compiled_infer_s"]
    return out


TARGETS = {
    "puma_infer_vs_frozen": ("PUMA inference latency within 1.2x of the frozen backbone", 1.2),
    "puma_train_step_vs_full_ft": ("PUMA training step faster than full fine-tuning", 1.0),
    "puma_train_peak_vs_full_ft": ("PUMA training peak memory at most 60% of full fine-tuning's", 0.6),
    "both_checkpointed_train_peak_puma_vs_full_ft": (
        "PUMA training peak memory at most 60% of full fine-tuning's, both with activation checkpointing",
        0.6,
    ),
    "puma_adapter_mb": ("PUMA adapter file under 11 MB (ViT-S/16)", 11.0),
}


def targets(
    methods: dict[str, Any], table: dict[str, Any], checkpointing: dict[str, float | None]
) -> dict[str, dict[str, Any]]:
    """The issue's targets, each with its bound, the measured value and whether it is met; the memory target also
    like for like with activation checkpointing on both sides."""
    values = {
        "puma_infer_vs_frozen": table["puma"]["infer_vs_frozen"],
        "puma_train_step_vs_full_ft": table["puma"]["train_step_vs_full_ft"],
        "puma_train_peak_vs_full_ft": table["puma"]["train_peak_vs_full_ft"],
        "both_checkpointed_train_peak_puma_vs_full_ft": checkpointing["both_checkpointed_train_peak_puma_vs_full_ft"],
        "puma_adapter_mb": methods["puma"]["adapter_mb"],
    }
    return {
        key: {"target": text, "bound": bound, "value": values[key], "met": _meets(key, values[key], bound)}
        for key, (text, bound) in TARGETS.items()
    }


def _meets(key: str, value: float | None, bound: float) -> bool | None:
    if value is None:
        return None
    # "within 1.2x" and "at most 60%" include the bound; "faster than" and "under" do not.
    inclusive = ("puma_infer_vs_frozen", "puma_train_peak_vs_full_ft", "both_checkpointed_train_peak_puma_vs_full_ft")
    return value <= bound if key in inclusive else value < bound


def markdown_table(result: dict[str, Any]) -> str:
    """The side-by-side table of docs/benchmarks.md."""
    settings = result["settings"]
    lines = [
        f"| method | trainable params | adapter MB | train step s (batch {settings['train_batch_size']}) | "
        "step vs full FT | train peak MB | peak vs full FT | infer ms/image | infer vs frozen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        entry, ratio = result["methods"][name], result["ratios"][name]
        cells = [
            f"{entry['trainable_params']:,}",
            f"{entry['adapter_mb']:.2f}",
            _fmt(entry["train_step_s"], 2),
            _fmt(ratio["train_step_vs_full_ft"], 2),
            _fmt(entry.get("train_peak_mb"), 0),
            _fmt(ratio["train_peak_vs_full_ft"], 2),
            f"{entry['infer_s'] * 1e3:.1f}",
            f"{ratio['infer_vs_frozen']:.2f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    full_ft = result["methods"]["full_ft"]
    for name, entry in result.get("activation_checkpointing", {}).items():
        step, peak = entry.get("train_step_s"), entry.get("train_peak_mb")
        cells = [
            f"{entry['trainable_params']:,}",
            f"{entry['adapter_mb']:.2f}",
            _fmt(step, 2),
            _fmt(step / full_ft["train_step_s"] if step and full_ft["train_step_s"] else None, 2),
            _fmt(peak, 0),
            _fmt(peak / full_ft["train_peak_mb"] if peak is not None and full_ft.get("train_peak_mb") else None, 2),
            "(as without)",
            "",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    compiled = result.get("compiled_inference")
    if compiled:
        backend = next(iter(compiled.values()))["backend"]
        lines += [
            "",
            f"| method | compile s | eager infer ms/image | compiled ({backend}) ms/image | speed-up | "
            "compiled vs frozen compiled |",
            "|---|---|---|---|---|---|",
        ]
        for name, entry in compiled.items():
            cells = [
                f"{entry['compile_s']:.1f}",
                f"{entry['eager_infer_s'] * 1e3:.1f}",
                f"{entry['compiled_infer_s'] * 1e3:.1f}",
                f"{entry['compiled_speedup']:.2f}",
                _fmt(entry.get("compiled_vs_frozen_compiled"), 2),
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def plot(result: dict[str, Any], path: str) -> None:
    """Ratios to the frozen forward / full fine-tuning with the targets, and the growth with image and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(METHODS)
    table = result["ratios"]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    panels = (
        ("infer_vs_frozen", "inference time per image / frozen", 1.2, names),
        ("train_step_vs_full_ft", "training step time / full FT", 1.0, names[1:]),
        ("train_peak_vs_full_ft", "training peak memory / full FT", 0.6, names[1:]),
    )
    checkpointed = result.get("activation_checkpointing", {})
    full_ft = result["methods"]["full_ft"]
    for axis, (key, title, bound, shown) in zip(axes[0], panels):
        values = [table[n][key] or 0.0 for n in shown]
        colours = ["tab:red" if n == "puma" else "tab:blue" for n in shown]
        if key != "infer_vs_frozen":  # training: add the rows with activation checkpointing (grey), vs plain full FT
            measure = "train_step_s" if key == "train_step_vs_full_ft" else "train_peak_mb"
            for name, entry in checkpointed.items():
                value, base = entry.get(measure), full_ft.get(measure)
                shown, values = [*shown, name], [*values, value / base if value is not None and base else 0.0]
                colours = [*colours, "tab:gray"]
        bars = axis.bar(shown, values, color=colours)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
        axis.axhline(bound, color="black", linestyle="--", linewidth=1, label=f"target {bound}")
        axis.set_title(title)
        axis.tick_params(axis="x", rotation=35)
        axis.legend(loc="upper left", fontsize=8)
    scale = result.get("scaling") or {}
    for axis, key, x_key, x_label, suffix in (
        (axes[1][0], "image_size", "image_size", "image size (px)", "_infer_s"),
        (axes[1][1], "infer_batch_size", "batch_size", "inference batch size", "_infer_s"),
        (axes[1][2], "train_batch_size", "batch_size", "training batch size", "_train_step_s_per_image"),
    ):
        rows = scale.get(key) or []
        for name, colour in (("frozen", "tab:blue"), ("puma", "tab:red"), ("full_ft", "tab:green")):
            if rows and f"{name}{suffix}" in rows[0]:
                values = [r[f"{name}{suffix}"] * 1e3 for r in rows]
                axis.plot([r[x_key] for r in rows], values, marker="o", color=colour, label=name)
        axis.set_xlabel(x_label)
        axis.set_ylabel("ms per image" + (" (training step)" if "train" in suffix else " (inference)"))
        axis.set_title(f"per-image cost vs {x_label}")
        if rows:
            axis.legend(fontsize=8)
    machine = result["machine"]
    figure.suptitle(
        f"Cost on a {result['settings']['backbone']} backbone, CPU {machine['torch_threads']} threads "
        f"({machine['cpu']}), load {result['load_average_start'][0]}-{result['load_average_end'][0]}, "
        f"{result['date'][:10]}",
        fontsize=10,
    )
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON file to write")
    # Flags are spelled with underscores like the trainer's keys; the hyphenated spellings work too.
    parser.add_argument("--figure", help="PNG to draw the ratios and the scaling into")
    parser.add_argument("--shape", default="vit_s16", choices=sorted(SHAPES), help="backbone shape (tiny: CI)")
    parser.add_argument("--image_size", "--image-size", type=int, help="default: the shape's (224 for vit_s16)")
    parser.add_argument("--train_batch_size", "--train-batch-size", type=int, default=8)
    parser.add_argument("--infer_batch_size", "--infer-batch-size", type=int, default=8)
    parser.add_argument(
        "--num_classes", "--num-classes", type=int, default=PAPER_TRAIN_CLASSES, help="loss proxies (paper: 15,952)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="rounds dropped before the timed ones")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (medians are reported)")
    parser.add_argument(
        "--memory_steps", "--memory-steps", type=int, default=2, help="training steps of each memory probe"
    )
    parser.add_argument(
        "--no_memory", "--no-memory", action="store_true", help="skip the per-method peak-memory processes"
    )
    parser.add_argument("--scale_image_sizes", "--scale-image-sizes", type=int, nargs="*", default=[160, 224, 288])
    parser.add_argument(
        "--scale_infer_batch_sizes", "--scale-infer-batch-sizes", type=int, nargs="*", default=[1, 8, 32]
    )
    parser.add_argument(
        "--scale_train_batch_sizes", "--scale-train-batch-sizes", type=int, nargs="*", default=[4, 8, 16]
    )
    parser.add_argument("--scale_repeats", "--scale-repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: the cores this process may use)"
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (GPU: timings synchronise, memory from the allocator)"
    )
    parser.add_argument("--precision", choices=sorted(PRECISIONS), help="autocast; default fp32 on CPU, bf16 on GPU")
    parser.add_argument(
        "--compile_methods",
        "--compile-methods",
        nargs="*",
        default=[],
        choices=[*METHODS, *COMPONENTS],
        help="also time these methods' inference under torch.compile, beside their eager forms (e.g. frozen puma)",
    )
    parser.add_argument(
        "--compile_backend",
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (aot_eager: no compiler)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.image_size = args.image_size or SHAPES[args.shape].image_size
    args.compile_methods = list(dict.fromkeys(args.compile_methods))
    args.precision = args.precision or ("bf16" if torch.device(args.device).type == "cuda" else "fp32")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    try:
        check_json_output(args.output, "benchmark", "a benchmark result")  # before minutes of measuring
    except ForeignContentError as error:
        raise SystemExit(f"error: {error}") from None
    args.threads = args.threads or configure_torch_threads()
    torch.set_num_threads(args.threads)
    shape = SHAPES[args.shape]
    result: dict[str, Any] = {"benchmark": "cost", **run_info(args.threads)}
    result["settings"] = {
        "backbone": f"{args.shape} shape, random weights" + (" (ViT-S/16)" if args.shape == "vit_s16" else ""),
        "shape": asdict(shape),
        "image_size": args.image_size,
        "train_batch_size": args.train_batch_size,
        "infer_batch_size": args.infer_batch_size,
        "num_classes": args.num_classes,
        "loss": "curricularface",
        "device": args.device,
        "precision": args.precision,
        "attn_implementation": shape.vit(args.image_size).config._attn_implementation,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "memory": (
            "rise of torch.cuda.max_memory_allocated over the allocated bytes at rest, per method in this process"
            if torch.device(args.device).type == "cuda"
            else "rise of peak RSS (VmHWM, reset via /proc/self/clear_refs) over the model at rest, "
            f"fresh forkserver process per method, glibc MALLOC_MMAP_THRESHOLD_="
            f"{os.environ.get('MALLOC_MMAP_THRESHOLD_', MMAP_THRESHOLD)}"
        ),
        "units": "seconds; MB = 1e6 bytes; infer_s per image; train_step_s per step of train_batch_size images",
    }
    start = time.perf_counter()
    if args.compile_methods:  # first: a backend that cannot compile here fails before the long measurements
        print(f"timing compiled inference ({args.compile_backend}): {' '.join(args.compile_methods)}", file=sys.stderr)
        result["compiled_inference"] = compiled_inference(args, shape)
    measured = measure_methods(args, shape)
    result["methods"] = {name: measured[name] for name in METHODS}
    result["components"] = {name: measured[name] for name in COMPONENTS}
    result["activation_checkpointing"] = {name: measured[name] for name in CHECKPOINTED}
    result["ratios"] = ratios(result["methods"])
    result["checkpointing_ratios"] = checkpointing_ratios(measured)
    result["puma_overhead"] = puma_overhead(measured)
    result["targets"] = targets(result["methods"], result["ratios"], result["checkpointing_ratios"])
    if args.scale_image_sizes or args.scale_infer_batch_sizes or args.scale_train_batch_sizes:
        print("measuring scaling with image and batch size", file=sys.stderr)
        result["scaling"] = scaling(args, shape)
    result["load_average_end"] = load_average()
    result["elapsed_s"] = time.perf_counter() - start
    write_json_atomically(args.output, result, default=_json_default)
    if args.figure:
        plot(result, args.figure)
    print(markdown_table(result))
    for target in result["targets"].values():
        verdict = "not measured" if target["met"] is None else "met" if target["met"] else "NOT met"
        print(f"target: {target['target']}: {_fmt(target['value'], 3)} -> {verdict}")
    print(f"load average start {result['load_average_start']}, end {result['load_average_end']}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
