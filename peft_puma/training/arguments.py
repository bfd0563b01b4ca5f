"""The arguments of a training run: its config keys and their checks; the defaults are the published recipe of the
paper (arXiv 2309.08944), listed in docs/training.md ("Config keys").

Two dataclasses, parsed together by ``transformers.HfArgumentParser`` (:mod:`.parsing`): :class:`DataConfig`, where
the data comes from (shared with ``python -m peft_puma.evaluate``), and :class:`TrainingConfig`, everything else. A
:class:`TrainingConfig` holds its :class:`DataConfig` in ``data`` and reads and sets the data keys on itself as well
(``config.uml_mini_dir``), so a run stays one flat set of keys: in YAML files, on the command line and in
:meth:`TrainingConfig.to_dict` (the ``config`` of the run file). Each field's ``help`` is its ``--help`` text.

``validate()`` checks each key's type against its annotation (numbers given as strings become numbers), then its
value, and turns every user mistake into an :class:`~peft_puma.errors.InvalidConfigError` that names the key, the value
and what is accepted, before any model or data is loaded.
"""

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data.schema import TEST_SPLIT
from ..data.specs import DATASET_SPECS
from ..data.transforms import TRAIN_CROP_SCALE, TRAIN_HFLIP_PROBABILITY
from ..data.unified import SCORED_SPLITS
from ..errors import InvalidConfigError
from ..losses import PAIR_LOSSES, loss_spec
from ..tuners.puma.config import PUMAConfig
from .methods import METHODS

MIXED_PRECISION_CHOICES: tuple[str, ...] = ("auto", "no", "fp16", "bf16")
SAMPLER_CHOICES: tuple[str, ...] = ("shuffle", "balanced", "m_per_class")
BACKBONE_FORMATS: tuple[str, ...] = ("auto", "transformers", "timm")
CHECK_IMAGES_CHOICES: tuple[str, ...] = ("full", "header", "exists")

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


@dataclass
class DataConfig:
    """Where the unified benchmark comes from (exactly one source) and which of its datasets to use.

    Shared by training (``TrainingConfig.data``) and ``python -m peft_puma.evaluate``.
    """

    _argument_group_name = "data keys"  # the --help section of HfArgumentParser (not a field)

    dataset_path: str | None = field(
        default=None,
        metadata={"help": "A DatasetDict (train/test) written by `save_to_disk` in the row schema of docs/data.md."},
    )
    dataset_roots: dict[str, str] | None = field(
        default=None,
        metadata={
            "help": "Build the paper benchmark from {name: folder, Hub id or 'hub'} with "
            "peft_puma.data.build_unified_dataset (names: cub, cars, sop, inshop, nabirds, dogs, flowers, aircraft)."
        },
    )
    uml_mini_dir: str | None = field(
        default=None, metadata={"help": "UML-mini, loaded from this folder (built there first when missing)."}
    )
    datasets: list[str] | None = field(
        default=None, metadata={"help": "Use only these datasets (the `dataset` column) of the source. Default: all."}
    )
    check_images: str = field(
        default="header", metadata={"help": "Image check of dataset_roots builds: full, header or exists."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Input resolution; default: the backbone image processor's crop size."}
    )

    def data_sources(self) -> dict[str, Any]:
        """The data-source keys that are set."""
        keys = ("dataset_path", "dataset_roots", "uml_mini_dir")
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}

    def validate(self) -> "DataConfig":
        """Check every key; raise :class:`InvalidConfigError` naming the first mistake. Returns ``self``."""
        check_types(self)
        self.validate_data()
        return self

    def validate_data(self) -> None:
        """The checks of the data keys' values (their types: :func:`check_types`)."""
        sources = self.data_sources()
        if len(sources) != 1:
            raise InvalidConfigError(
                "Give exactly one data source among dataset_path, dataset_roots and uml_mini_dir; "
                f"got {sorted(sources) or 'none'}."
            )
        if self.dataset_roots is not None:
            unknown = sorted(set(self.dataset_roots) - set(DATASET_SPECS))
            if unknown or not self.dataset_roots:
                raise InvalidConfigError(
                    f"dataset_roots has unknown dataset name(s) {unknown or '(empty mapping)'}; "
                    f"known: {', '.join(DATASET_SPECS)}."
                )
        if self.datasets is not None and not self.datasets:
            raise InvalidConfigError("datasets must be null (all datasets) or a non-empty list of dataset names.")
        _choice("check_images", self.check_images, CHECK_IMAGES_CHOICES)
        _positive_or_none("image_size", self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _DataKey:
    """A key of ``TrainingConfig.data``, read and set on the config itself (``config.uml_mini_dir``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, config: Any, owner: type | None = None) -> Any:
        return self if config is None else getattr(config.data, self.name)

    def __set__(self, config: Any, value: Any) -> None:
        setattr(config.data, self.name, value)


@dataclass
class TrainingConfig:
    """Every knob of a training run; the defaults are the published recipe (arXiv 2309.08944, docs/training.md)."""

    _argument_group_name = "training keys"  # the --help section of HfArgumentParser (not a field)

    data: DataConfig = field(
        default_factory=DataConfig, metadata={"help": "The data keys (a DataConfig); each is also set on the config."}
    )

    output_dir: str | None = field(
        default=None, metadata={"help": "Run folder: adapter, results.json, checkpoints/, logs/. Required."}
    )
    # --- model ---
    backbone: str | None = field(
        default=None,
        metadata={"help": "Backbone: a transformers folder or Hub id, or a timm ViT Hub id / folder. Required."},
    )
    backbone_format: str = field(
        default="auto",
        metadata={"help": "auto, transformers or timm (timm ViTs load via peft_puma.backbones.timm_vit)."},
    )
    method: str = field(
        default="puma",
        metadata={"help": "PUMA preset (puma, static_adapter, single_prompt, linear, ...) or lora, full_finetune."},
    )
    puma: dict[str, Any] = field(default_factory=dict, metadata={"help": "PUMAConfig field overrides."})
    lora_r: int | None = field(
        default=None, metadata={"help": "LoRA rank; null: the rank whose size is closest to PUMA's adapter budget."}
    )
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; null: equal to the rank."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | str = field(
        default="all-linear", metadata={"help": "LoRA targets (PEFT syntax); default every attention/MLP linear."}
    )
    activation_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "Recompute each transformer block in backward instead of keeping its activations: much less "
            "training memory for about one more forward pass of compute; same gradients (the gates' random state "
            "is replayed)."
        },
    )
    # --- loss ---
    loss: str = field(default="curricularface", metadata={"help": "Loss name of peft_puma.losses.make_loss."})
    loss_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "Loss constructor overrides."})
    # --- optimisation (the paper's recipe) ---
    epochs: int = field(default=100, metadata={"help": "Training epochs (100)."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Stop after this many optimiser steps (smoke runs); null: all epochs."}
    )
    per_device_batch_size: int = field(default=45, metadata={"help": "Batch per process (45 x 4 GPUs = 180)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Base learning rate (1e-4)."})
    lr_multipliers: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_LR_MULTIPLIERS),
        metadata={"help": "Per-group multipliers of the base lr: prompts, adapters, head, proxies, lora, backbone."},
    )
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay on every group (1e-4)."})
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata={"help": "AdamW betas."})
    adam_eps: float = field(default=1e-8, metadata={"help": "AdamW eps."})
    lr_step_epochs: int = field(default=20, metadata={"help": "Multiply the lr by lr_gamma every this many epochs."})
    lr_gamma: float = field(default=0.5, metadata={"help": "Step-schedule factor (0.5)."})
    grad_clamp: float | None = field(
        default=1.0, metadata={"help": "Element-wise gradient clamp to [-v, v] (value clipping); null: off."}
    )
    mixed_precision: str = field(
        default="auto", metadata={"help": "auto (bf16/fp16 on GPU, fp32 on CPU), no, fp16 or bf16."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, data order, augmentation, gates (0)."})
    sampler: str = field(
        default="shuffle",
        metadata={"help": "shuffle (published), balanced (datasets equally often) or m_per_class (pair losses)."},
    )
    samples_per_class: int = field(default=4, metadata={"help": "Images per class in a batch for m_per_class."})
    # --- augmentation (the paper's recipe) ---
    crop_scale: list[float] = field(
        default_factory=lambda: list(TRAIN_CROP_SCALE),
        metadata={"help": "Area range of the training RandomResizedCrop, as fractions of the image ([0.2, 1.0])."},
    )
    hflip_probability: float = field(
        default=TRAIN_HFLIP_PROBABILITY, metadata={"help": "Probability of a horizontal flip in training (0.5)."}
    )
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    cpu_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch threads per process on the CPU; null: the cores this process may use (CPU affinity and "
            "cgroup quota) shared among the processes on the machine, or OMP_NUM_THREADS when set."
        },
    )
    # --- evaluation, logging, checkpoints ---
    eval_every_epochs: int = field(
        default=0,
        metadata={
            "help": "Also evaluate every N epochs (0: only at the end): the validation split where the data has one, "
            "else the test split."
        },
    )
    eval_split: str = field(
        default=TEST_SPLIT,
        metadata={"help": "Split the final evaluation scores: test (the published protocol) or validation."},
    )
    eval_batch_size: int = field(default=256, metadata={"help": "Batch per process when embedding test images."})
    eval_ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8], metadata={"help": "k of Recall@k."})
    log_every_steps: int = field(default=10, metadata={"help": "Tracker logging interval in steps."})
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"], metadata={"help": "Accelerate trackers (tensorboard, wandb, ...)."}
    )
    progress_bar: bool = field(default=True, metadata={"help": "Show a progress bar on the main process."})
    save_every_steps: int = field(default=500, metadata={"help": "Checkpoint interval in steps (0: only at the end)."})
    save_total_limit: int = field(default=2, metadata={"help": "Complete checkpoints kept (newest)."})
    resume: bool | str = field(
        default=False, metadata={"help": "true: continue from the newest complete checkpoint; or a checkpoint path."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final adapter folder to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repository for push_to_hub."})

    # The data keys, on the config itself (loop.py, data.py and the benchmarks read `config.uml_mini_dir`).
    dataset_path = _DataKey()
    dataset_roots = _DataKey()
    uml_mini_dir = _DataKey()
    datasets = _DataKey()
    check_images = _DataKey()
    image_size = _DataKey()

    def validate(self) -> "TrainingConfig":
        """Check every key; raise :class:`InvalidConfigError` naming the first mistake. Returns ``self``."""
        check_types(self.data)
        check_types(self)
        if not self.output_dir:
            raise InvalidConfigError("output_dir is required (the run folder: adapter, results, checkpoints).")
        if not self.backbone:
            raise InvalidConfigError("backbone is required (a transformers folder or Hub id, or a timm ViT).")
        self.data.validate_data()
        _choice("backbone_format", self.backbone_format, BACKBONE_FORMATS)
        self._validate_method()
        self._validate_loss_and_batches()
        for name in ("epochs", "per_device_batch_size", "eval_batch_size", "lr_step_epochs", "log_every_steps"):
            _positive(name, getattr(self, name))
        for name in ("num_workers", "eval_every_epochs", "save_every_steps"):
            if getattr(self, name) < 0:
                raise InvalidConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        _positive_or_none("max_steps", self.max_steps)
        _positive_or_none("cpu_threads", self.cpu_threads)
        _positive("save_total_limit", self.save_total_limit)
        self._validate_optimiser()
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION_CHOICES)
        _choice("eval_split", self.eval_split, SCORED_SPLITS)
        self._validate_augmentation()
        if not self.eval_ks or any(k < 1 for k in self.eval_ks):
            raise InvalidConfigError(f"eval_ks must be a non-empty list of positive integers, got {self.eval_ks!r}.")
        if isinstance(self.resume, str) and not os.path.isdir(self.resume):
            raise InvalidConfigError(
                f"resume: {self.resume} does not exist or is not a folder; resume takes true (the newest complete "
                "checkpoint of output_dir) or the path of a checkpoint folder (output_dir/checkpoints/checkpoint-N)."
            )
        if self.push_to_hub and not self.hub_model_id:
            raise InvalidConfigError("push_to_hub needs hub_model_id (the Hub repository to upload to).")
        return self

    def _validate_method(self) -> None:
        if self.method not in METHODS:
            raise InvalidConfigError(f"Unknown method {self.method!r}; accepted: {', '.join(METHODS)}.")
        if self.puma:
            PUMAConfig.from_any(dict(self.puma))  # unknown fields and bad values raise InvalidConfigError
        _positive_or_none("lora_r", self.lora_r)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InvalidConfigError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout!r}.")

    def _validate_loss_and_batches(self) -> None:
        loss_spec(self.loss)  # unknown names raise InvalidConfigError listing the accepted ones
        _choice("sampler", self.sampler, SAMPLER_CHOICES)
        _positive("samples_per_class", self.samples_per_class)
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
            _positive(name, getattr(self, name))
        if self.weight_decay < 0:
            raise InvalidConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
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

    def to_dict(self) -> dict[str, Any]:
        """The run's flat keys, data keys first: the ``config`` of the run file, compared at ``resume``."""
        values = dataclasses.asdict(self)
        return {**values.pop("data"), **values}


# Keys that may change between a checkpoint and its resumption: they steer the run, not what is learnt so far.
RUN_CONTROL_KEYS: frozenset[str] = frozenset(
    {
        "output_dir",
        "resume",
        "epochs",
        "max_steps",
        "num_workers",
        "cpu_threads",
        "eval_every_epochs",
        "eval_split",
        "eval_batch_size",
        "eval_ks",
        "log_every_steps",
        "report_to",
        "progress_bar",
        "save_every_steps",
        "save_total_limit",
        "push_to_hub",
        "hub_model_id",
        "dataset_path",
        "dataset_roots",
        "uml_mini_dir",
        "check_images",
        "activation_checkpointing",
    }
)


def config_sections(cls: type = TrainingConfig) -> tuple[type, ...]:
    """The dataclasses whose fields are the keys of a ``cls`` config, data first (what HfArgumentParser parses)."""
    return (cls,) if issubclass(cls, DataConfig) else (DataConfig, cls)


@functools.cache
def key_types(cls: type = TrainingConfig) -> dict[str, Any]:
    """Every key of a ``cls`` config -> its annotation, data keys first (``typing.get_type_hints``)."""
    keys: dict[str, Any] = {}
    for section in config_sections(cls):
        hints = typing.get_type_hints(section)
        keys.update({f.name: hints[f.name] for f in dataclasses.fields(section) if not _is_section(hints[f.name])})
    return keys


def key_default(cls: type, key: str) -> Any:
    """The default of ``key`` in a ``cls`` config (a fresh copy for list and mapping keys)."""
    for section in config_sections(cls):
        for f in dataclasses.fields(section):
            if f.name == key:
                return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    raise KeyError(key)


def is_mapping_type(hint: Any) -> bool:
    """Whether a key of this type is a mapping (``--key.name VALUE`` sets one of its entries)."""
    return any(typing.get_origin(option) is dict for option in _options(hint))


def check_types(config: Any) -> None:
    """Coerce and check the type of every key of one dataclass (a config built in Python bypasses the parser)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if _is_section(hints[f.name]):
            continue
        value = coerce(f.name, getattr(config, f.name), hints[f.name])
        _refuse_non_finite(f.name, value)
        setattr(config, f.name, value)


def coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the key's type: numbers given as strings (``1e-4`` reads as a string in YAML 1.1) become
    numbers, ints become floats where a float is expected; anything else of the wrong type is an error."""
    for option in _options(hint):
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError):
            continue
    raise InvalidConfigError(f"Config key {key!r}: {value!r} is not a valid {type_name(hint)}.")


def type_name(hint: Any, separator: str = " or ") -> str:
    """``int | None`` -> ``"int or null"``: the accepted types, as they are written in YAML."""
    names = []
    for option in _options(hint):
        origin = typing.get_origin(option)
        if option is type(None):
            names.append("null")
        elif origin is list or origin is dict:
            names.append("list" if origin is list else "mapping")
        else:
            names.append(getattr(option, "__name__", str(option)))
    return separator.join(names)


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _options(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _coerce_one(value: Any, option: Any) -> Any:
    origin = typing.get_origin(option)
    if option is type(None):
        if value is None:
            return None
        raise TypeError("not null")
    if option is Any:
        return value
    if option is bool or option is str:
        if isinstance(value, option):
            return value
        raise TypeError(f"not a {option.__name__}")
    if option is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError("not an int")
    if option is float:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return float(value)
        raise TypeError("not a float")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise TypeError("not a list")
        (item,) = typing.get_args(option)
        return [_coerce_one(v, item) for v in value]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError("not a mapping")
        _, item = typing.get_args(option)
        return {str(k): _coerce_one(v, item) for k, v in value.items()}
    raise TypeError(f"unsupported annotation {option}")


def _refuse_non_finite(name: str, value: Any) -> None:
    """NaN and infinity pass every ``<`` / ``>`` check, then wreck training far from the cause: stop them here."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidConfigError(f"{name} must be a finite number, got {value!r}.")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(f"{name}.{key}", item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_non_finite(name, item)


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InvalidConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def _positive(name: str, value: Any) -> None:
    if value is None or value <= 0:
        raise InvalidConfigError(f"{name} must be positive, got {value!r}.")


def _positive_or_none(name: str, value: Any) -> None:
    if value is not None and value <= 0:
        raise InvalidConfigError(f"{name} must be positive or null, got {value!r}.")
