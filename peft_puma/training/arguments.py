"""The keys of a training run and their checks; the defaults are the published recipe of the paper (arXiv
2309.08944), listed in docs/training.md ("Config keys").

:class:`TrainingConfig` extends the data keys (:class:`~peft_puma.data.config.DataConfig`, shared with ``python -m
peft_puma.evaluate``), so a run is one flat set of keys: in YAML files, on the command line (read by
:mod:`peft_puma.config.parsing`) and in :meth:`TrainingConfig.to_dict` (the ``config`` of the run file). Each key is
declared with :func:`~peft_puma.config.keys.key`: its ``--help`` text and its role in a saved run (recipe, control,
result) sit in the field's metadata.

The ``puma`` mapping holds :class:`~peft_puma.tuners.puma.PUMAConfig` fields (``--puma.keep_prob 1.0``), typed by
PUMAConfig's own annotations and listed by ``--help``; :meth:`TrainingConfig.puma_config` turns them and the
method's preset into the PUMAConfig the model is built with, refusing a value that contradicts the preset.

``validate()`` checks each key's type against its annotation, then its value, and turns every user mistake into an
:class:`~peft_puma.errors.InvalidConfigError` that names the key, the value and what is accepted, before any model or
data is loaded.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..backbones.loading import BACKBONE_FORMATS
from ..config.keys import (
    CONTROL,
    RESULT,
    Entry,
    KeyRoles,
    check_choice,
    check_not_negative,
    check_positive,
    check_positive_or_none,
    check_types,
    coerce,
    key,
    key_roles,
)
from ..config.parsing import load_keys
from ..data.config import DataConfig
from ..data.loader import SAMPLERS
from ..data.schema import TEST_SPLIT
from ..data.transforms import TRAIN_CROP_SCALE, TRAIN_HFLIP_PROBABILITY
from ..data.unified import SCORED_SPLITS
from ..errors import InvalidConfigError
from ..losses import PAIR_LOSSES, loss_spec
from ..tuners.puma.config import PUMA_PRESETS, PUMAConfig, preset_conflicts

MIXED_PRECISION_CHOICES: tuple[str, ...] = ("auto", "no", "fp16", "bf16")

# The paper's learning-rate multipliers (prompt pool, adapters, head x10; proxies x1e4). `lora` and `backbone` are
# the groups of the LoRA and full fine-tuning baselines (backbone: base lr 1e-4, as the paper's full fine-tuning).
DEFAULT_LR_MULTIPLIERS: dict[str, float] = {
    "prompts": 10.0,
    "adapters": 10.0,
    "head": 10.0,
    "proxies": 1e4,
    "lora": 10.0,
    "backbone": 1.0,
}

# The methods that are not PUMA presets train PUMA's head alone on top of their own trainable part.
BASELINES: dict[str, str] = {
    "lora": "LoRA (PEFT) on the backbone's linears + PUMA's embedding head",
    "full_finetune": "whole backbone trainable + PUMA's embedding head",
}
METHOD_NAMES: tuple[str, ...] = (*PUMA_PRESETS, *BASELINES)
HEAD_ONLY_PRESET = "linear"  # the PUMA preset under a baseline: PUMA's head, no adapters, no prompts


def preset_of(method: str) -> str:
    """The PUMA preset a method's model is built from: its own, or PUMA's head alone under a baseline."""
    return method if method in PUMA_PRESETS else HEAD_ONLY_PRESET


def puma_fields() -> dict[str, Entry]:
    """The fields of :class:`PUMAConfig` a run may set in its ``puma`` mapping (PUMA's own, not PEFT's bookkeeping),
    with their types, help and defaults."""
    inherited = {f.name for f in dataclasses.fields(PUMAConfig.__mro__[1])}
    hints = typing.get_type_hints(PUMAConfig)
    return {
        f.name: Entry(hints[f.name], f.metadata.get("help", ""), f.default)
        for f in dataclasses.fields(PUMAConfig)
        if f.init and f.name not in inherited
    }


@dataclass
class TrainingConfig(DataConfig):
    """Every knob of a training run; the defaults are the published recipe (arXiv 2309.08944, docs/training.md)."""

    _argument_group_name = "training keys"  # the --help section of HfArgumentParser (not a field)

    output_dir: str | None = key(
        None, role=CONTROL, help="Run folder: adapter, results.json, checkpoints/, logs/. Required."
    )
    # --- model ---
    backbone: str | None = key(
        None, help="Backbone: a transformers folder or Hub id, or a timm ViT Hub id / folder. Required."
    )
    backbone_format: str = key(
        "auto", help="auto, transformers or timm (timm ViTs load via peft_puma.backbones.timm_vit)."
    )
    method: str = key(
        "puma", help="PUMA preset (puma, static_adapter, single_prompt, linear, ...) or lora, full_finetune."
    )
    puma: dict[str, Any] = key(
        default_factory=dict,
        entries=puma_fields,
        help="PUMAConfig fields (docs/puma.md); a PUMA method's preset fixes some (a contradiction is an error).",
    )
    lora_r: int | None = key(None, help="LoRA rank; null: the rank whose size is closest to PUMA's adapter budget.")
    lora_alpha: float | None = key(None, help="LoRA alpha; null: equal to the rank.")
    lora_dropout: float = key(0.0, help="LoRA dropout.")
    lora_target_modules: list[str] | str = key(
        "all-linear", help="LoRA targets (PEFT syntax); default every attention/MLP linear."
    )
    activation_checkpointing: bool = key(
        False,
        role=CONTROL,
        help="Recompute each transformer block in backward instead of keeping its activations: much less "
        "training memory for about one more forward pass of compute; same gradients (the gates' random state "
        "is replayed).",
    )
    # --- loss ---
    loss: str = key("curricularface", help="Loss name of peft_puma.losses.make_loss.")
    loss_options: dict[str, Any] = key(default_factory=dict, help="Loss constructor overrides.")
    # --- optimisation (the paper's recipe) ---
    epochs: int = key(100, role=RESULT, help="Training epochs (100).")
    max_steps: int | None = key(
        None, role=RESULT, help="Stop after this many optimiser steps (smoke runs); null: all epochs."
    )
    per_device_batch_size: int = key(45, per_process=True, help="Batch per process (45 x 4 GPUs = 180).")
    learning_rate: float = key(1e-4, help="Base learning rate (1e-4).")
    lr_multipliers: dict[str, float] = key(
        default_factory=lambda: dict(DEFAULT_LR_MULTIPLIERS),
        help="Per-group multipliers of the base lr: prompts, adapters, head, proxies, lora, backbone.",
    )
    weight_decay: float = key(1e-4, help="AdamW weight decay on every group (1e-4).")
    adam_betas: list[float] = key(default_factory=lambda: [0.9, 0.999], help="AdamW betas.")
    adam_eps: float = key(1e-8, help="AdamW eps.")
    lr_step_epochs: int = key(20, help="Multiply the lr by lr_gamma every this many epochs.")
    lr_gamma: float = key(0.5, help="Step-schedule factor (0.5).")
    grad_clamp: float | None = key(1.0, help="Element-wise gradient clamp to [-v, v] (value clipping); null: off.")
    mixed_precision: str = key("auto", help="auto (bf16/fp16 on GPU, fp32 on CPU), no, fp16 or bf16.")
    seed: int = key(0, help="Seed of initialisation, data order, augmentation, gates (0).")
    sampler: str = key(
        "shuffle", help="shuffle (published), balanced (datasets equally often) or m_per_class (pair losses)."
    )
    samples_per_class: int = key(4, help="Images per class in a batch for m_per_class.")
    # --- augmentation (the paper's recipe) ---
    crop_scale: list[float] = key(
        default_factory=lambda: list(TRAIN_CROP_SCALE),
        before=list(TRAIN_CROP_SCALE),
        help="Area range of the training RandomResizedCrop, as fractions of the image ([0.2, 1.0]).",
    )
    hflip_probability: float = key(
        TRAIN_HFLIP_PROBABILITY,
        before=TRAIN_HFLIP_PROBABILITY,
        help="Probability of a horizontal flip in training (0.5).",
    )
    num_workers: int = key(0, role=CONTROL, help="DataLoader worker processes.")
    cpu_threads: int | None = key(
        None,
        role=CONTROL,
        help="torch threads per process on the CPU; null: the cores this process may use (CPU affinity and "
        "cgroup quota) shared among the processes on the machine, or OMP_NUM_THREADS when set.",
    )
    # --- evaluation, logging, checkpoints ---
    eval_every_epochs: int = key(
        0,
        role=CONTROL,
        help="Also evaluate every N epochs (0: only at the end): the validation split where the data has one, "
        "else the test split.",
    )
    eval_split: str = key(
        TEST_SPLIT,
        role=RESULT,
        before=TEST_SPLIT,
        help="Split the final evaluation scores: test (the published protocol) or validation.",
    )
    eval_batch_size: int = key(256, role=CONTROL, help="Batch per process when embedding test images.")
    eval_ks: list[int] = key(default_factory=lambda: [1, 2, 4, 8], role=CONTROL, help="k of Recall@k.")
    log_every_steps: int = key(10, role=CONTROL, help="Tracker logging interval in steps.")
    report_to: list[str] = key(
        default_factory=lambda: ["tensorboard"], role=CONTROL, help="Accelerate trackers (tensorboard, wandb, ...)."
    )
    progress_bar: bool = key(True, role=CONTROL, help="Show a progress bar on the main process.")
    save_every_steps: int = key(500, role=CONTROL, help="Checkpoint interval in steps (0: only at the end).")
    save_total_limit: int = key(2, role=CONTROL, help="Complete checkpoints kept (newest).")
    resume: bool | str = key(
        False, role=CONTROL, help="true: continue from the newest complete checkpoint; or a checkpoint path."
    )
    push_to_hub: bool = key(False, role=CONTROL, help="Upload the final adapter folder to the Hub.")
    hub_model_id: str | None = key(None, role=CONTROL, help="Hub repository for push_to_hub.")

    def validate(self) -> TrainingConfig:
        """Check every key; raise :class:`InvalidConfigError` naming the first mistake. Returns ``self``."""
        check_types(self)
        if not self.output_dir:
            raise InvalidConfigError("output_dir is required (the run folder: adapter, results, checkpoints).")
        if not self.backbone:
            raise InvalidConfigError("backbone is required (a transformers folder or Hub id, or a timm ViT).")
        self.validate_data()
        check_choice("backbone_format", self.backbone_format, BACKBONE_FORMATS)
        self._validate_method()
        self._validate_loss_and_batches()
        for name in ("epochs", "per_device_batch_size", "eval_batch_size", "lr_step_epochs", "log_every_steps"):
            check_positive(name, getattr(self, name))
        for name in ("num_workers", "eval_every_epochs", "save_every_steps"):
            check_not_negative(name, getattr(self, name))
        check_positive_or_none("max_steps", self.max_steps)
        check_positive_or_none("cpu_threads", self.cpu_threads)
        check_positive("save_total_limit", self.save_total_limit)
        self._validate_optimiser()
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION_CHOICES)
        check_choice("eval_split", self.eval_split, SCORED_SPLITS)
        self._validate_augmentation()
        if not self.eval_ks or any(k < 1 for k in self.eval_ks):
            raise InvalidConfigError(f"eval_ks must be a non-empty list of positive integers, got {self.eval_ks!r}.")
        if isinstance(self.resume, str) and not os.path.isdir(self.resume):
            raise InvalidConfigError(
                f"resume: {self.resume} does not exist or is not a folder; resume takes true (the newest complete "
                "checkpoint of output_dir) or the path of a checkpoint folder (output_dir/checkpoints/checkpoint-N)."
            )
        self._refuse_output_in_data()
        if self.push_to_hub and not self.hub_model_id:
            raise InvalidConfigError("push_to_hub needs hub_model_id (the Hub repository to upload to).")
        return self

    def _refuse_output_in_data(self) -> None:
        """The run folder and a data folder must not overlap: the trainer's files would mix with the data's, and
        --resume and evaluate would then refuse the folder as holding files peft_puma did not write."""
        output = os.path.abspath(self.output_dir)
        for name, path in self.data_sources().items():
            # dataset_roots values may be Hub ids; a path there counts when it exists
            folders = [f for f in path.values() if os.path.exists(f)] if isinstance(path, dict) else [path]
            for folder in folders:
                data = os.path.abspath(folder)
                if os.path.commonpath([output, data]) in (output, data):
                    raise InvalidConfigError(
                        f"output_dir {self.output_dir!r} and {name} {folder!r} overlap (one is, or holds, the "
                        "other); give the run its own folder."
                    )

    def global_batch(self, num_processes: int) -> int:
        """Images per optimiser step over every process: what the loss sees (docs/spec.md section 6)."""
        return self.per_device_batch_size * num_processes

    def puma_entries(self) -> dict[str, Any]:
        """The ``puma`` mapping, each entry as its :class:`PUMAConfig` field's type; an unknown field is an error
        naming the accepted ones."""
        accepted = puma_fields()
        unknown = sorted(set(self.puma) - set(accepted))
        if unknown:
            raise InvalidConfigError(
                f"Unknown PUMAConfig fields {unknown} in puma; accepted fields: {', '.join(accepted)} (docs/puma.md)."
            )
        return {name: coerce(f"puma.{name}", value, accepted[name].hint) for name, value in self.puma.items()}

    def puma_config(self) -> PUMAConfig:
        """The :class:`PUMAConfig` the method is built with: its preset (for a baseline, PUMA's head alone) with the
        ``puma`` entries. An entry that contradicts one of the preset's defining fields is refused, naming both:
        ``--method static_adapter --puma.keep_prob 0.5`` would not be the static adapter."""
        preset = preset_of(self.method)
        entries = self.puma_entries()
        for name, (fixed, given) in preset_conflicts(preset, entries).items():
            raise InvalidConfigError(
                f"method {self.method!r} fixes puma.{name} to {fixed!r}, but the config sets puma.{name}: {given!r}. "
                f"Drop puma.{name}, or choose a method that leaves it free (puma)."
            )
        return PUMAConfig.from_preset(preset, **entries)

    def for_method(self, method: str) -> TrainingConfig:
        """This run with another ``method``, everything else the same: the ``puma`` entries the new method's preset
        fixes are left to the preset (a benchmark that trains every method from one config file changes only the
        method; ``--method single_prompt`` on a config that sizes the prompt pool still gives one prompt)."""
        fixed = PUMA_PRESETS[preset_of(method)] if method in METHOD_NAMES else {}
        puma = {name: value for name, value in self.puma.items() if name not in fixed}
        return dataclasses.replace(self, method=method, puma=puma)

    def _validate_method(self) -> None:
        if self.method not in METHOD_NAMES:
            raise InvalidConfigError(f"Unknown method {self.method!r}; accepted: {', '.join(METHOD_NAMES)}.")
        self.puma_config()  # unknown fields, bad values and contradictions with the preset raise here
        check_positive_or_none("lora_r", self.lora_r)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InvalidConfigError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout!r}.")

    def _validate_loss_and_batches(self) -> None:
        loss_spec(self.loss)  # unknown names raise InvalidConfigError listing the accepted ones
        check_choice("sampler", self.sampler, SAMPLERS)
        check_positive("samples_per_class", self.samples_per_class)
        if self.loss in PAIR_LOSSES:
            if self.sampler != "m_per_class" or self.samples_per_class < 2:
                raise InvalidConfigError(
                    f"Loss {self.loss!r} learns from pairs of images of one class inside a batch, so every class in a "
                    "batch needs at least 2 samples: set sampler: m_per_class and samples_per_class >= 2 (got sampler "
                    f"{self.sampler!r}, samples_per_class {self.samples_per_class}). A plain shuffle over thousands of "
                    "classes gives batches with almost no positive pair."
                )
            if self.per_device_batch_size < 2:
                raise InvalidConfigError(
                    f"Loss {self.loss!r} needs at least 2 images per process batch, got {self.per_device_batch_size}."
                )

    def _validate_augmentation(self) -> None:
        low, high = self.crop_scale if len(self.crop_scale) == 2 else (0.0, 0.0)
        if not 0.0 < low <= high <= 1.0:
            raise InvalidConfigError(
                f"crop_scale must be two fractions of the image area [low, high] with 0 < low <= high <= 1, got "
                f"{self.crop_scale!r} (the published recipe: [0.2, 1.0])."
            )
        if not 0.0 <= self.hflip_probability <= 1.0:
            raise InvalidConfigError(
                f"hflip_probability must lie in [0, 1], got {self.hflip_probability!r} (the published recipe: 0.5)."
            )

    def _validate_optimiser(self) -> None:
        for name in ("learning_rate", "adam_eps", "lr_gamma"):
            check_positive(name, getattr(self, name))
        check_not_negative("weight_decay", self.weight_decay)
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise InvalidConfigError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}.")
        unknown = sorted(set(self.lr_multipliers) - set(DEFAULT_LR_MULTIPLIERS))
        if unknown:
            raise InvalidConfigError(
                f"lr_multipliers has unknown group(s) {unknown}; groups: {', '.join(DEFAULT_LR_MULTIPLIERS)}."
            )
        if any(value < 0 for value in self.lr_multipliers.values()):
            raise InvalidConfigError(f"lr_multipliers must be >= 0, got {self.lr_multipliers!r}.")
        self.lr_multipliers = {**DEFAULT_LR_MULTIPLIERS, **self.lr_multipliers}
        if self.grad_clamp is not None and self.grad_clamp <= 0:
            raise InvalidConfigError(f"grad_clamp must be positive or null (off), got {self.grad_clamp!r}.")

    @staticmethod
    def key_roles() -> KeyRoles:
        """Which keys steer a run and which make it another run (their fields' roles): what ``--resume`` and the
        reuse of a finished run compare (:mod:`peft_puma.runs.same_run`)."""
        return key_roles(TrainingConfig)


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    validate: bool = True,
) -> TrainingConfig:
    """A training config from a YAML file (optional) updated by overrides (:func:`peft_puma.config.parsing.load_keys`):
    a mapping of keys (``{"puma.keep_prob": 1.0}`` sets one entry) or command-line tokens (``["--epochs", "3"]``);
    validated unless ``validate`` is false (:func:`peft_puma.training.train` validates what it is given)."""
    config = load_keys(path, overrides, TrainingConfig)
    return config.validate() if validate else config
