"""The cost benchmark's measurements: every method at the main setting, the scaling with image and batch size, and
inference under ``torch.compile``. Each returns typed records (``cost_records``); nothing here derives or reports."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from cost_flops import count_flops
from cost_memory import ProbeSettings, memory_by_method
from cost_models import (
    CHECKPOINTED,
    COMPONENTS,
    INFERENCE_FORM_SOURCES,
    METHODS,
    BackboneShape,
    Runtime,
    adapter_megabytes,
    build_method,
    count_trainable,
    embed,
    inference_forms,
    lora_rank,
    make_batch,
    trainer_method,
    training_step,
)
from cost_records import (
    CompiledInference,
    InferenceForm,
    InferenceFormsRow,
    MethodCost,
    Scaling,
    ScalingRow,
    Timing,
)
from cost_timing import inference_task, interleaved_timings, train_task
from torch import nn

from peft_puma.training.methods import compile_for_training

SCALED = ("frozen", "puma", "full_ft")  # the methods of the scaling measurements


@dataclass(frozen=True)
class CostOptions:
    """What to measure, from the command line."""

    shape: BackboneShape
    runtime: Runtime
    image_size: int
    train_batch_size: int
    infer_batch_size: int
    num_classes: int
    warmup: int
    repeats: int
    memory_steps: int
    memory: bool
    threads: int
    seed: int = 0
    scale_image_sizes: Sequence[int] = ()
    scale_infer_batch_sizes: Sequence[int] = ()
    scale_train_batch_sizes: Sequence[int] = ()
    scale_repeats: int = 3
    compile_methods: Sequence[str] = ()
    compile_backend: str = "inductor"
    form_batch_sizes: Sequence[int] = (1, 8, 32)
    form_repeats: int = 5
    compile_forms: bool = False  # also time every inference form under torch.compile (compile_backend, compile_mode)
    compile_mode: str | None = None
    train_compile: bool = False  # --torch_compile: every trained model compiled as the trainer's torch_compile does

    @property
    def scales(self) -> bool:
        return bool(self.scale_image_sizes or self.scale_infer_batch_sizes or self.scale_train_batch_sizes)

    def models(self, names: Sequence[str], image_size: int | None = None) -> dict[str, nn.Module]:
        """One model per name, each on its own copy of the same seeded backbone."""
        base = self.shape.vit(image_size or self.image_size, seed=self.seed)
        models = {name: build_method(name, copy.deepcopy(base), self.runtime.device) for name in names}
        if self.train_compile:
            torch._dynamo.reset()
            for name, model in models.items():
                if name != "frozen":  # the frozen backbone is not trained
                    compile_for_training(model, self.compile_backend, self.compile_mode)
        return models

    def probe_settings(self) -> ProbeSettings:
        return ProbeSettings(
            shape=self.shape,
            runtime=self.runtime,
            image_size=self.image_size,
            infer_batch_size=self.infer_batch_size,
            train_batch_size=self.train_batch_size,
            num_classes=self.num_classes,
            memory_steps=self.memory_steps,
            threads=self.threads,
        )


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- main setting
def measure_methods(options: CostOptions) -> dict[str, MethodCost]:
    """Every row at the main setting (``--image_size``, batch sizes): the methods, PUMA's components and the rows
    with activation checkpointing (which changes training only, so those are not timed in inference)."""
    inferred = [*METHODS, *COMPONENTS]
    names = [*inferred, *CHECKPOINTED]
    models = options.models(names)
    rows = {name: _static_cost(name, model) for name, model in models.items()}
    infer = _time_inference({name: models[name] for name in inferred}, options, options.infer_batch_size)
    trained = {name: model for name, model in models.items() if name != "frozen"}  # the zero-shot row is not trained
    train = _time_training(trained, options, options.train_batch_size)
    del models, trained
    for name, timing in infer.items():
        rows[name] = rows[name].with_inference(timing, options.infer_batch_size)
    for name, timing in train.items():
        rows[name] = rows[name].with_training(timing, options.train_batch_size)
    if options.memory:
        _progress(f"measuring peak memory: {len(names)} fresh processes")
        for name, probe in memory_by_method(names, options.probe_settings()).items():
            rows[name] = rows[name].with_memory(probe, options.train_batch_size, inferred=name in infer)
    return rows


def _static_cost(name: str, model: nn.Module) -> MethodCost:
    return MethodCost(
        trainer_method=trainer_method(name),
        activation_checkpointing=name in CHECKPOINTED,
        trainable_params=count_trainable(model),
        adapter_mb=adapter_megabytes(model),
        lora_rank=lora_rank(model) if trainer_method(name) == "lora" else None,
    )


def _time_inference(
    models: dict[str, nn.Module],
    options: CostOptions,
    batch_size: int,
    image_size: int | None = None,
    rounds: tuple[int, int] | None = None,
) -> dict[str, Timing]:
    runtime = options.runtime
    warmup, repeats = (options.warmup, options.repeats) if rounds is None else rounds
    _progress(f"timing inference: {len(models)} models x ({warmup} + {repeats}) rounds")
    pixels, _ = make_batch(batch_size, image_size or options.image_size, 1, 1, runtime.device)
    tasks = {name: inference_task(model, pixels, runtime) for name, model in models.items()}
    return interleaved_timings(tasks, warmup, repeats, runtime)


def _time_training(
    models: dict[str, nn.Module],
    options: CostOptions,
    batch_size: int,
    image_size: int | None = None,
    rounds: tuple[int, int] | None = None,
) -> dict[str, Timing]:
    """The trainer's step of each model, timed in interleaved rounds; the steps (optimiser state, accelerator) are
    dropped on return."""
    runtime = options.runtime
    warmup, repeats = (options.warmup, options.repeats) if rounds is None else rounds
    _progress(f"timing training: {len(models)} models x ({warmup} + {repeats}) rounds")
    pixels, labels = make_batch(batch_size, image_size or options.image_size, options.num_classes, 2, runtime.device)
    steps = {name: training_step(model, options.num_classes, runtime) for name, model in models.items()}
    tasks = {name: train_task(step, pixels, labels) for name, step in steps.items()}
    return interleaved_timings(tasks, warmup, repeats, runtime)


# ---------------------------------------------------------------------------------------------------- scaling
def scaling(options: CostOptions) -> Scaling:
    """How the per-image cost of the frozen model, PUMA and full fine-tuning grows with the image size, the inference
    batch and the training batch, one at a time (1 warm-up round, ``--scale_repeats`` timed rounds)."""
    rounds = (1, options.scale_repeats)
    by_image_size = []
    for image_size in options.scale_image_sizes:
        models = options.models(SCALED, image_size)
        infer = _time_inference(models, options, options.infer_batch_size, image_size, rounds)
        trained = {name: models[name] for name in SCALED if name != "frozen"}
        train = _time_training(trained, options, options.train_batch_size, image_size, rounds)
        by_image_size.append(
            _row(options, image_size, options.infer_batch_size, options.train_batch_size, infer, train)
        )
    models = options.models(SCALED)
    by_infer_batch = [
        _row(options, options.image_size, batch, None, _time_inference(models, options, batch, rounds=rounds), {})
        for batch in options.scale_infer_batch_sizes
    ]
    trained = {name: models[name] for name in SCALED if name != "frozen"}
    by_train_batch = [
        _row(options, options.image_size, None, batch, {}, _time_training(trained, options, batch, rounds=rounds))
        for batch in options.scale_train_batch_sizes
    ]
    return Scaling(by_image_size, by_infer_batch, by_train_batch)


def _row(
    options: CostOptions,
    image_size: int,
    infer_batch: int | None,
    train_batch: int | None,
    infer: dict[str, Timing],
    train: dict[str, Timing],
) -> ScalingRow:
    return ScalingRow(
        image_size=image_size,
        tokens=options.shape.tokens(image_size),
        infer_batch_size=infer_batch,
        train_batch_size=train_batch,
        infer_s={name: timing.wall_s / infer_batch for name, timing in infer.items()} if infer_batch else {},
        train_step_s_per_image={name: t.wall_s / train_batch for name, t in train.items()} if train_batch else {},
    )


# ---------------------------------------------------------------------------------------------------- compiled
def compiled_inference(options: CostOptions) -> dict[str, CompiledInference]:
    """Inference of ``--compile_methods`` under ``torch.compile`` (``--compile_backend``), timed in the same rounds as
    their eager forms: what compiling buys each method, and PUMA's ratio to the frozen model when both are compiled.
    The first call compiles (after a reset of dynamo's caches, so that nothing compiled before is reused); its time is
    ``compile_s``, not part of the timed rounds."""
    runtime = options.runtime
    pixels, _ = make_batch(options.infer_batch_size, options.image_size, 1, 1, runtime.device)
    tasks: dict[tuple[str, bool], Callable[[], Any]] = {}
    compile_s: dict[str, float] = {}
    for name, model in options.models(options.compile_methods).items():
        tasks[name, False] = inference_task(model, pixels, runtime)
        torch._dynamo.reset()
        tasks[name, True], compile_s[name] = _compiled_task(model, pixels, options)
    timings = interleaved_timings(tasks, options.warmup, options.repeats, runtime)
    per_image = {key: timing.wall_s / options.infer_batch_size for key, timing in timings.items()}
    frozen = per_image.get(("frozen", True))
    return {
        name: CompiledInference(
            backend=options.compile_backend,
            compile_s=compile_s[name],
            eager_infer_s=per_image[name, False],
            compiled_infer_s=per_image[name, True],
            compiled_wall_samples_s=timings[name, True].wall_samples_s,
            compiled_vs_frozen_compiled=None if frozen is None else per_image[name, True] / frozen,
        )
        for name in compile_s
    }


# ---------------------------------------------------------------------------------------------------- inference forms
def measure_inference_forms(options: CostOptions) -> list[InferenceFormsRow]:
    """Every inference form (frozen, PUMA unfused and fused, LoRA unmerged and merged) at each of
    ``--form_batch_sizes``: FLOPs per image, then ``--warmup`` + ``--form_repeats`` interleaved rounds of eval-mode
    embeddings (with ``--compile_forms``, each form's compiled copy in the same rounds), and how far a rewritten
    form's embeddings are from its source's."""
    runtime = options.runtime
    forms = inference_forms(options.shape.vit(options.image_size, seed=options.seed), runtime.device, options.seed)
    rows = []
    for batch_size in options.form_batch_sizes:
        pixels, _ = make_batch(batch_size, options.image_size, 1, 1, runtime.device)
        flops = {name: count_flops(model, pixels) // batch_size for name, model in forms.items()}
        differences = _form_differences(forms, pixels, runtime)
        tasks = {(name, False): inference_task(model, pixels, runtime) for name, model in forms.items()}
        compiled = _compiled_forms(forms, pixels, options) if options.compile_forms else {}
        tasks.update({(name, True): form.task for name, form in compiled.items() if form.task is not None})
        _progress(
            f"timing inference forms at batch {batch_size}: {len(tasks)} models x "
            f"({options.warmup} + {options.form_repeats}) rounds"
        )
        timings = interleaved_timings(tasks, options.warmup, options.form_repeats, runtime)
        measured = {}
        for name in forms:
            timing, form = timings[name, False], compiled.get(name)
            compiled_timing = timings.get((name, True))
            measured[name] = InferenceForm(
                infer_s=timing.wall_s / batch_size,
                infer_cpu_s=timing.cpu_s / batch_size,
                infer_wall_samples_s=timing.wall_samples_s,
                flops_per_image=flops[name],
                max_abs_difference=differences.get(name),
                compiled_infer_s=None if compiled_timing is None else compiled_timing.wall_s / batch_size,
                compile_s=None if form is None else form.compile_s,
                compile_error=None if form is None else form.error,
            )
        rows.append(InferenceFormsRow(batch_size, measured))
    return rows


@dataclass(frozen=True)
class _CompiledForm:
    task: Callable[[], None] | None  # None where the form did not compile
    compile_s: float | None
    error: str | None


def _compiled_forms(
    forms: dict[str, nn.Module], pixels: torch.Tensor, options: CostOptions
) -> dict[str, _CompiledForm]:
    """Every form wrapped in ``torch.compile(fullgraph=True)`` and called once (the compilation, timed apart). Dynamo's
    caches are reset first, so that no form reuses graphs compiled for another batch size (where dynamo would
    compile a dynamic-shape graph instead). A form that does not compile is recorded with the compiler's message
    instead of stopping the measurement: which form a compiler refuses is itself a result."""
    torch._dynamo.reset()
    compiled = {}
    for name, model in forms.items():
        _progress(f"compiling {name} ({options.compile_backend}, mode {options.compile_mode or 'default'})")
        try:
            task, seconds = _compiled_task(model, pixels, options, options.compile_mode)
        except Exception as error:  # noqa: BLE001 - recorded in the result: the compiler's refusal is a finding
            lines = str(error).strip().splitlines()
            compiled[name] = _CompiledForm(None, None, f"{type(error).__name__}: {lines[0] if lines else ''}"[:500])
            continue
        compiled[name] = _CompiledForm(task, seconds, None)
    return compiled


def _compiled_task(
    model: nn.Module, pixels: torch.Tensor, options: CostOptions, mode: str | None = None
) -> tuple[Callable[[], None], float]:
    """``model`` under ``torch.compile(fullgraph=True)`` as an inference task, and the seconds of its first call (the
    compilation), which the timed rounds leave out."""
    compiled = torch.compile(model, backend=options.compile_backend, mode=mode, fullgraph=True)
    task = inference_task(compiled, pixels, options.runtime)
    start = time.perf_counter()
    task()
    options.runtime.synchronize()
    return task, time.perf_counter() - start


def _form_differences(forms: dict[str, nn.Module], pixels: torch.Tensor, runtime: Runtime) -> dict[str, float]:
    """Largest absolute difference of each rewritten form's embeddings from its source form's."""
    with torch.inference_mode(), runtime.autocast():
        embeddings = {name: embed(model, pixels).float() for name, model in forms.items()}
    return {
        name: (embeddings[name] - embeddings[source]).abs().max().item()
        for name, source in INFERENCE_FORM_SOURCES.items()
    }
