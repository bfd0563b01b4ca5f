"""The cost benchmark's results as typed records: what ``cost.py`` measures, derives and writes.

The JSON file is :meth:`CostResult.to_json`: the fields of these records, by the same names (docs/benchmarks.md
lists them). Measuring fills :class:`MethodCost` rows, analysis derives :class:`Ratios`, :class:`CheckpointingRatios`
and :class:`PhaseOverhead` from them, reporting reads them all; a renamed field fails where it is read, not as a
silently missing dictionary key. Units: seconds; MB = 10^6 bytes; ``infer_*`` per image; ``train_step_*`` per step of
``train_batch_size`` images unless the name says ``per_image``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Timing:
    """One task's interleaved timing: median wall and CPU seconds of the timed rounds, and the wall samples."""

    wall_s: float
    cpu_s: float
    wall_samples_s: list[float]


@dataclass(frozen=True)
class MemoryProbe:
    """Peak memory of one method in a process of its own (see ``cost_memory.probe_memory``)."""

    rss_at_rest_mb: float
    infer_peak_mb: float
    train_peak_mb: float | None = None  # None: not trained (the frozen backbone)
    train_peak_rss_mb: float | None = None


@dataclass(frozen=True)
class MethodCost:
    """Everything measured for one row (a method, a PUMA component, or a method with activation checkpointing).
    ``None``: not measured (no training for ``frozen``, no inference for the checkpointed rows, no memory with
    ``--no_memory``)."""

    trainer_method: str | None
    activation_checkpointing: bool
    trainable_params: int
    adapter_mb: float
    lora_rank: int | None = None
    infer_s: float | None = None
    infer_cpu_s: float | None = None
    infer_images_per_s: float | None = None
    infer_wall_samples_s: list[float] | None = None
    train_step_s: float | None = None
    train_step_s_per_image: float | None = None
    train_step_cpu_s: float | None = None
    train_wall_samples_s: list[float] | None = None
    rss_at_rest_mb: float | None = None
    infer_peak_mb: float | None = None
    train_peak_mb: float | None = None
    train_peak_mb_per_image: float | None = None
    train_peak_rss_mb: float | None = None

    def with_inference(self, timing: Timing, batch_size: int) -> MethodCost:
        per_image = timing.wall_s / batch_size
        return dataclasses.replace(
            self,
            infer_s=per_image,
            infer_cpu_s=timing.cpu_s / batch_size,
            infer_images_per_s=1.0 / per_image,
            infer_wall_samples_s=timing.wall_samples_s,
        )

    def with_training(self, timing: Timing, batch_size: int) -> MethodCost:
        return dataclasses.replace(
            self,
            train_step_s=timing.wall_s,
            train_step_s_per_image=timing.wall_s / batch_size,
            train_step_cpu_s=timing.cpu_s,
            train_wall_samples_s=timing.wall_samples_s,
        )

    def with_memory(self, probe: MemoryProbe, batch_size: int, inferred: bool) -> MethodCost:
        peak = probe.train_peak_mb
        return dataclasses.replace(
            self,
            rss_at_rest_mb=probe.rss_at_rest_mb,
            infer_peak_mb=probe.infer_peak_mb if inferred else None,
            train_peak_mb=peak,
            train_peak_mb_per_image=None if peak is None else peak / batch_size,
            train_peak_rss_mb=probe.train_peak_rss_mb,
        )


@dataclass(frozen=True)
class Ratios:
    """One method against the frozen forward (inference) and against full fine-tuning (everything)."""

    infer_vs_frozen: float | None
    infer_vs_full_ft: float | None
    train_step_vs_full_ft: float | None
    train_peak_vs_full_ft: float | None
    trainable_vs_full_ft: float | None
    adapter_mb_vs_full_ft: float | None


@dataclass(frozen=True)
class CheckpointingRatios:
    """Training time and peak memory with activation checkpointing, against PUMA and full fine-tuning."""

    puma_checkpointed_train_step_vs_puma: float | None
    puma_checkpointed_train_peak_vs_puma: float | None
    puma_checkpointed_train_step_vs_full_ft: float | None
    puma_checkpointed_train_peak_vs_full_ft: float | None
    both_checkpointed_train_step_puma_vs_full_ft: float | None
    both_checkpointed_train_peak_puma_vs_full_ft: float | None


@dataclass(frozen=True)
class PhaseOverhead:
    """PUMA's extra cost over ``reference`` in one phase (inference or training), and the part of it that PUMA with
    prompts only and with adapters only pay."""

    reference: str
    puma_extra_s: float
    prompts_extra_s: float
    adapters_extra_s: float
    prompts_share: float | None
    adapters_share: float | None


@dataclass(frozen=True)
class ScalingRow:
    """Per-image cost of ``frozen``, ``puma`` and ``full_ft`` at one image size and batch sizes: ``infer_s`` and
    ``train_step_s_per_image`` by method (the frozen backbone is not trained)."""

    image_size: int
    tokens: int
    infer_batch_size: int | None
    train_batch_size: int | None
    infer_s: dict[str, float] = field(default_factory=dict)
    train_step_s_per_image: dict[str, float] = field(default_factory=dict)

    @property
    def puma_infer_vs_frozen(self) -> float | None:
        return ratio(self.infer_s.get("puma"), self.infer_s.get("frozen"))

    @property
    def puma_train_vs_full_ft(self) -> float | None:
        return ratio(self.train_step_s_per_image.get("puma"), self.train_step_s_per_image.get("full_ft"))

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.update(puma_infer_vs_frozen=self.puma_infer_vs_frozen, puma_train_vs_full_ft=self.puma_train_vs_full_ft)
        return values


@dataclass(frozen=True)
class Scaling:
    """How per-image cost grows with one setting at a time: the image size (both batches fixed), the inference
    batch and the training batch (image size fixed)."""

    image_size: list[ScalingRow]
    infer_batch_size: list[ScalingRow]
    train_batch_size: list[ScalingRow]

    def to_json(self) -> dict[str, Any]:
        return {name: [row.to_json() for row in rows] for name, rows in vars(self).items()}


@dataclass(frozen=True)
class CompiledInference:
    """One method's inference eager and under ``torch.compile``, timed in the same rounds."""

    backend: str
    compile_s: float  # the first call, which compiles; not part of the timed rounds
    eager_infer_s: float
    compiled_infer_s: float
    compiled_wall_samples_s: list[float]
    compiled_vs_frozen_compiled: float | None = None

    @property
    def compiled_speedup(self) -> float:
        return self.eager_infer_s / self.compiled_infer_s

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "compiled_speedup": self.compiled_speedup}


@dataclass(frozen=True)
class InferenceForm:
    """One inference form of a model (``cost_models.INFERENCE_FORMS``) at one batch size: per-image time (median of
    the timed rounds), FLOPs per image (``cost_flops``), and for a rewritten form (fused PUMA, merged LoRA) the largest
    absolute difference of its embeddings from its source form's on the timed batch."""

    infer_s: float
    infer_cpu_s: float
    infer_wall_samples_s: list[float]
    flops_per_image: int
    max_abs_difference: float | None = None
    # --compile_forms: the same form under torch.compile, timed in the same rounds; compile_s is its first call (the
    # compilation, not timed in the rounds); compile_error the compiler's message where it could not compile the form.
    compiled_infer_s: float | None = None
    compile_s: float | None = None
    compile_error: str | None = None


@dataclass(frozen=True)
class InferenceFormsRow:
    """Every inference form at one batch size, with their ratios to the frozen backbone. ``flops_floor`` is PUMA's
    FLOPs over the frozen backbone's: the time ratio PUMA would have if every operation ran as fast per FLOP as the
    frozen model's."""

    batch_size: int
    forms: dict[str, InferenceForm]

    def infer_vs_frozen(self, name: str) -> float | None:
        return ratio(self.forms[name].infer_s, self.forms["frozen"].infer_s)

    def infer_cpu_vs_frozen(self, name: str) -> float | None:
        """The same ratio in process CPU time, which another process's load on the cores stretches less."""
        return ratio(self.forms[name].infer_cpu_s, self.forms["frozen"].infer_cpu_s)

    def flops_vs_frozen(self, name: str) -> float | None:
        return ratio(self.forms[name].flops_per_image, self.forms["frozen"].flops_per_image)

    def compiled_vs_frozen_compiled(self, name: str) -> float | None:
        """The ratio when both are compiled (``--compile_forms``)."""
        return ratio(self.forms[name].compiled_infer_s, self.forms["frozen"].compiled_infer_s)

    def compiled_speedup(self, name: str) -> float | None:
        """Eager time over compiled time: above 1 where compiling helps."""
        return ratio(self.forms[name].infer_s, self.forms[name].compiled_infer_s)

    @property
    def flops_floor(self) -> float | None:
        return self.flops_vs_frozen("puma")

    @property
    def fused_vs_floor(self) -> float | None:
        return ratio(self.infer_vs_frozen("puma_fused"), self.flops_floor)

    def to_json(self) -> dict[str, Any]:
        forms = {
            name: {
                **dataclasses.asdict(form),
                "infer_vs_frozen": self.infer_vs_frozen(name),
                "infer_cpu_vs_frozen": self.infer_cpu_vs_frozen(name),
                "flops_vs_frozen": self.flops_vs_frozen(name),
                "compiled_vs_frozen_compiled": self.compiled_vs_frozen_compiled(name),
                "compiled_speedup": self.compiled_speedup(name),
            }
            for name, form in self.forms.items()
        }
        return {
            "batch_size": self.batch_size,
            "forms": forms,
            "flops_floor": self.flops_floor,
            "fused_vs_floor": self.fused_vs_floor,
        }


@dataclass(frozen=True)
class CostSettings:
    """What was measured, how: the backbone, the batches, the recipe's loss, device, precision, rounds."""

    backbone: str
    shape: dict[str, int]
    image_size: int
    train_batch_size: int
    infer_batch_size: int
    num_classes: int
    loss: str
    training_step: str
    device: str
    precision: str
    attn_implementation: str
    warmup: int
    repeats: int
    memory: str
    units: str = "seconds; MB = 1e6 bytes; infer_s per image; train_step_s per step of train_batch_size images"
    measured: str = "all"  # or "inference": the inference forms only (--only inference)
    form_batch_sizes: list[int] = field(default_factory=list)
    form_repeats: int = 0
    form_compile: str | None = None  # --compile_forms: "torch.compile(fullgraph=True, backend=..., mode=...)"
    training_compile: str | None = None  # --torch_compile: how every trained model was compiled


@dataclass(frozen=True)
class CostResult:
    """One run of the cost benchmark. ``run`` is ``run_info`` (date, command, machine, versions, commit, load at the
    start), written at the top level of the JSON file like every benchmark's. With ``--only inference`` the method
    rows and what derives from them are ``None``: only ``inference_forms`` is measured."""

    run: dict[str, Any]
    settings: CostSettings
    methods: dict[str, MethodCost] | None
    components: dict[str, MethodCost] | None
    activation_checkpointing: dict[str, MethodCost] | None
    ratios: dict[str, Ratios] | None
    checkpointing_ratios: CheckpointingRatios | None
    puma_overhead: dict[str, PhaseOverhead] | None
    scaling: Scaling | None
    compiled_inference: dict[str, CompiledInference] | None
    inference_forms: list[InferenceFormsRow] | None
    load_average_end: list[float]
    elapsed_s: float
    note: str | None = None  # --note: what the person running it knows of the machine (another job on the cores, ...)
    step_breakdown: dict[str, dict[str, float]] | None = None  # --breakdown: seconds per part of the step, by method

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the result file; non-finite numbers become ``null``."""
        values: dict[str, Any] = {"benchmark": "cost", **self.run}
        for item in dataclasses.fields(self):
            if item.name != "run":
                values[item.name] = _plain(getattr(self, item.name))
        return _finite(values)


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or None where either is unmeasured or the base is zero."""
    return None if value is None or not base else value / base


def _plain(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
