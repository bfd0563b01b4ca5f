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
from typing import Any, NamedTuple

import yaml

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
    choice_metavar,
    coerce,
    did_you_mean,
    flag_alias,
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
from ..losses import LOSS_NAMES, PAIR_LOSSES, loss_spec
from ..tuners.puma.config import PUMA_PRESETS, PUMAConfig, preset_conflicts

TORCH_COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
MIXED_PRECISION_CHOICES: tuple[str, ...] = ("auto", "no", "fp16", "bf16")
APPLIED_PRECISIONS: tuple[str, ...] = ("no", "fp16", "bf16")  # what a run trains in (accelerate's names)
PRECISION_VARIABLE = "ACCELERATE_MIXED_PRECISION"  # set by `accelerate launch` from its flag or its config file


class Precision(NamedTuple):
    """The precision a run trains in (``no``, ``fp16``, ``bf16``) and, in words, where that came from."""

    applied: str
    source: str

    def line(self) -> str:
        """The one line a run prints at start-up."""
        return f"Precision: {self.applied} ({self.source})."


def resolve_precision(given: str | None) -> Precision:
    """The precision a run trains in: the ``mixed_precision`` key when the config gives it (``auto``: bf16, or fp16
    on a GPU without bf16, on a GPU; fp32 on the CPU); without it, accelerate's choice, as ``accelerate launch``
    passes it (``ACCELERATE_MIXED_PRECISION``, from its ``--mixed_precision`` flag or its config file) or, for a
    plain ``python -m`` run, as ``accelerate config`` wrote it in accelerate's default config file; with neither,
    ``auto``. An explicit key wins, so a config file that names its precision trains in it however it is launched.
    fp16 on the CPU is refused (:func:`_refuse_fp16_on_the_cpu`), so the precision printed and recorded is the one
    that runs."""
    return _refuse_fp16_on_the_cpu(_wanted_precision(given))


def _wanted_precision(given: str | None) -> Precision:
    if given is not None and given != "auto":
        return Precision(given, f"mixed_precision: {given}, given in the config or on the command line")
    if given is None:
        variable = os.environ.get(PRECISION_VARIABLE, "").strip().lower()
        if variable:
            where = (
                f"{PRECISION_VARIABLE}={variable}, which accelerate launch sets from --mixed_precision or its config"
            )
            return Precision(_accelerate_precision(variable, where), f"from {where}")
        path = accelerate_config_file()
        configured = _configured_precision(path)
        if configured:
            where = f"the accelerate config file {path}"
            return Precision(_accelerate_precision(configured, where), f"mixed_precision: {configured} in {where}")
    return _auto_precision("mixed_precision: auto, given" if given == "auto" else _NOTHING_SAID)


def _refuse_fp16_on_the_cpu(precision: Precision) -> Precision:
    """Accelerate ignores fp16 on the CPU: such a run would train in fp32 while recording fp16. bf16 does apply."""
    import torch

    if precision.applied == "fp16" and not torch.cuda.is_available():
        raise InvalidConfigError(
            f"fp16 ({precision.source}) does not apply on the CPU, which this run would use: accelerate would train "
            "in fp32. Use --bf16 (mixed_precision: bf16), which the CPU runs, or --mixed_precision no."
        )
    return precision


_NOTHING_SAID = f"auto: neither the config, {PRECISION_VARIABLE} nor an accelerate config file sets mixed_precision"


def _auto_precision(why: str) -> Precision:
    import torch

    if not torch.cuda.is_available():
        return Precision("no", f"{why}; fp32 on the CPU")
    if torch.cuda.is_bf16_supported():
        return Precision("bf16", f"{why}; bf16 on a GPU that supports it")
    return Precision("fp16", f"{why}; fp16 on a GPU without bf16")


def _accelerate_precision(value: str, where: str) -> str:
    if value not in APPLIED_PRECISIONS:
        raise InvalidConfigError(
            f"{where} asks for mixed precision {value!r}; peft_puma trains in {', '.join(APPLIED_PRECISIONS)}: set "
            "mixed_precision in the config, or another value for accelerate."
        )
    return value


def accelerate_config_file() -> str:
    """Accelerate's default config file, where ``accelerate config`` writes it: ``$HF_HOME/accelerate/
    default_config.yaml``, HF_HOME defaulting to ``$XDG_CACHE_HOME/huggingface`` or ``~/.cache/huggingface`` (found as
    accelerate finds it)."""
    cache = os.environ.get("HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"))
    folder = os.path.join(os.path.expanduser(cache), "accelerate")
    yaml_file, json_file = os.path.join(folder, "default_config.yaml"), os.path.join(folder, "default_config.json")
    return json_file if os.path.isfile(json_file) and not os.path.isfile(yaml_file) else yaml_file


def _configured_precision(path: str) -> str | None:
    """The ``mixed_precision`` of an accelerate config file (YAML or JSON), or ``None`` where it names none."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        raise InvalidConfigError(
            f"The accelerate config file {path} cannot be read ({error}); repair it with `accelerate config`, or set "
            "mixed_precision in the config."
        ) from None
    value = values.get("mixed_precision") if isinstance(values, dict) else None
    if value is False:  # an unquoted `no` in a YAML file
        return "no"
    return str(value).strip().lower() if value else None


def applied_precision(value: str | None) -> str:
    """A saved or wanted ``mixed_precision`` as the precision it trains in here, which is what two runs compare
    (:mod:`peft_puma.runs.same_run`): runs record what applied; older ones recorded ``auto``, and a config that does
    not say takes accelerate's choice."""
    if value in APPLIED_PRECISIONS:
        return value
    return resolve_precision(value).applied if value in (None, "auto") else value


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


# Which PUMAConfig fields shape which part (the others, use_adapters, use_prompts, embedding_size and backbone_family,
# shape every method's model): a method without that part does not use them.
ADAPTER_FIELDS: tuple[str, ...] = ("r", "scale", "train_scale", "keep_prob", "layers")
PROMPT_FIELDS: tuple[str, ...] = ("num_prompts", "prompt_length", "regularization_weight")
# LoRA's automatic rank matches the size PUMA's adapters and prompt pool would have (methods.lora_rank_for_budget).
LORA_BUDGET_FIELDS: tuple[str, ...] = ("r", "layers", "train_scale", "num_prompts", "prompt_length")


def unused_puma_fields(method: str, config: PUMAConfig, lora_r: int | None = None) -> dict[str, str]:
    """``{field: why}`` of the PUMAConfig fields a method built with ``config`` does not use: the adapters' fields
    without adapters, the prompt pool's without prompts, unless LoRA sizes its automatic rank by them."""
    unused: dict[str, str] = {}
    preset = PUMA_PRESETS[preset_of(method)]
    what = BASELINES.get(method, f"PUMA preset {method!r}")
    if not config.use_adapters:
        why = f"it trains no PUMA adapters: {what}" if "use_adapters" in preset else "puma.use_adapters is false"
        unused.update(dict.fromkeys(ADAPTER_FIELDS, why))
    if not config.use_prompts:
        why = f"it has no prompt pool: {what}" if "use_prompts" in preset else "puma.use_prompts is false"
        unused.update(dict.fromkeys(PROMPT_FIELDS, why))
    if method == "lora":
        for name in LORA_BUDGET_FIELDS:
            if lora_r is None:
                unused.pop(name, None)  # they size LoRA's automatic rank
            elif name in unused:
                unused[name] += f"; lora_r is {lora_r}, so it no longer sizes LoRA's rank either"
    return unused


def _methods_using(name: str) -> str:
    """Which methods use a PUMAConfig field, as the end of a refusal."""
    part = "use_adapters" if name in ADAPTER_FIELDS else "use_prompts"
    methods = [method for method, fixed in PUMA_PRESETS.items() if fixed.get(part, True)]
    advice = f"choose a method that uses it ({', '.join(methods)})"
    if name in LORA_BUDGET_FIELDS:
        advice += ", or lora with lora_r: null, whose rank it sizes"
    return advice


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
        None, role=CONTROL, metavar="DIR", help="Run folder: adapter, results.json, checkpoints/, logs/. Required."
    )
    overwrite_output_dir: bool = key(
        False,
        role=CONTROL,
        help="Start afresh in an output_dir that holds a finished or checkpointed run: first remove what the "
        "trainer wrote there (a folder with other files is still refused, untouched; docs/safety.md).",
    )
    # --- model ---
    backbone: str | None = key(
        None,
        metavar="NAME_OR_PATH",
        help="Backbone: a transformers folder or Hub id, or a timm ViT Hub id / folder. Required.",
    )
    backbone_format: str = key(
        "auto",
        metavar=choice_metavar(BACKBONE_FORMATS),
        help="transformers, timm (timm ViTs load via peft_puma.backbones.timm_vit) or auto (guessed).",
    )
    method: str = key(
        "puma",
        metavar=choice_metavar(METHOD_NAMES),
        help="A PUMA preset (puma is the published method; the others are its ablations) or a baseline: lora, "
        "full_finetune.",
    )
    puma: dict[str, Any] = key(
        default_factory=dict,
        entries=puma_fields,
        help="PUMAConfig fields (docs/puma.md); a PUMA method's preset fixes some (a contradiction is an error), and "
        "a field the method does not use is an error too (lora has no PUMA adapters: --puma.keep_prob).",
    )
    lora_r: int | None = key(None, help="LoRA rank; null: the rank whose size is closest to PUMA's adapter budget.")
    lora_alpha: float | None = key(None, help="LoRA alpha; null: equal to the rank.")
    lora_dropout: float = key(0.0, help="LoRA dropout.")
    lora_target_modules: list[str] | str = key(
        "all-linear",
        metavar="NAME ...",
        help="LoRA targets (PEFT syntax: module names, or all-linear: every attention and MLP linear).",
    )
    activation_checkpointing: bool = key(
        False,
        role=CONTROL,
        aliases=("gradient_checkpointing",),
        help="Recompute each transformer block in backward instead of keeping its activations: much less "
        "training memory for about one more forward pass of compute; same gradients (the gates' random state "
        "is replayed).",
    )
    torch_compile: bool = key(
        False,
        role=CONTROL,
        help="Compile the model with torch.compile for training (TrainingArguments' name): the first steps pay the "
        "compilation, later ones run fused kernels. The gates are drawn from eager mode's random stream (inductor's "
        "fallback_random), so a compiled run draws the same gates as an eager one.",
    )
    torch_compile_backend: str = key(
        "inductor", role=CONTROL, help="torch.compile backend of torch_compile (aot_eager: tracing, no C++ compiler)."
    )
    torch_compile_mode: str | None = key(
        None,
        role=CONTROL,
        metavar=choice_metavar(TORCH_COMPILE_MODES),
        help="torch.compile mode of torch_compile (reduce-overhead: CUDA graphs; max-autotune: kernel search).",
    )
    # --- loss ---
    loss: str = key(
        "curricularface", metavar=choice_metavar(LOSS_NAMES), help="Loss name of peft_puma.losses.make_loss."
    )
    loss_options: dict[str, Any] = key(default_factory=dict, help="Loss constructor overrides.")
    # --- optimisation (the paper's recipe) ---
    epochs: int = key(100, role=RESULT, aliases=("num_train_epochs",), help="Training epochs.")
    max_steps: int | None = key(
        None, role=RESULT, help="Stop after this many optimiser steps (smoke runs); null: all epochs."
    )
    per_device_batch_size: int = key(
        45,
        per_process=True,
        aliases=("per_device_train_batch_size",),
        refused={
            "batch_size": "the batch is given per process, as per_device_batch_size; the loss sees it times the "
            "number of processes (45 x 4 GPUs = 180).",
            "train_batch_size": "the batch is given per process, as per_device_batch_size; the loss sees it times "
            "the number of processes (45 x 4 GPUs = 180).",
            "gradient_accumulation_steps": "the loss sees the whole global batch at once (its proxies and every "
            "process's embeddings), so accumulating smaller batches would train another loss. For a larger global "
            "batch, raise per_device_batch_size or the number of processes; for less memory, "
            "activation_checkpointing.",
        },
        help="Images per process in a training step; the loss sees this times the number of processes (45 x 4 GPUs "
        "= 180, the published batch).",
    )
    learning_rate: float = key(1e-4, help="Base learning rate; each parameter group's is this times its multiplier.")
    lr_multipliers: dict[str, float] = key(
        default_factory=lambda: dict(DEFAULT_LR_MULTIPLIERS),
        help="Per-group multipliers of the base lr: prompts, adapters, head, proxies, lora, backbone.",
    )
    weight_decay: float = key(1e-4, help="AdamW weight decay on every group.")
    adam_betas: list[float] = key(
        default_factory=lambda: [0.9, 0.999],
        refused={
            "adam_beta1": "AdamW's two betas are one key here, adam_betas: [beta1, beta2].",
            "adam_beta2": "AdamW's two betas are one key here, adam_betas: [beta1, beta2].",
        },
        help="AdamW betas (two numbers).",
    )
    adam_eps: float = key(1e-8, aliases=("adam_epsilon",), help="AdamW eps.")
    lr_step_epochs: int = key(
        20,
        refused={
            name: "the schedule is the paper's step schedule, without warmup: the lr is multiplied by lr_gamma every "
            "lr_step_epochs epochs."
            for name in ("lr_scheduler_type", "warmup_steps", "warmup_ratio")
        },
        help="Multiply the lr by lr_gamma every this many epochs.",
    )
    lr_gamma: float = key(0.5, help="Step-schedule factor.")
    grad_clamp: float | None = key(
        1.0,
        refused={
            "max_grad_norm": "max_grad_norm rescales the gradients to a global norm; the published recipe clamps "
            "each gradient element to [-v, v] instead, grad_clamp: v (null: off)."
        },
        help="Element-wise gradient clamp to [-v, v] (value clipping); null: off.",
    )
    mixed_precision: str | None = key(
        None,
        metavar=choice_metavar(MIXED_PRECISION_CHOICES),
        aliases=(flag_alias("bf16", "bf16", "no"), flag_alias("fp16", "fp16", "no")),
        compare=applied_precision,
        help="no (fp32), fp16 (on a GPU; refused on the CPU, where accelerate ignores it), bf16, or auto (bf16, or "
        "fp16 without bf16, on a GPU; fp32 on the CPU); null: "
        "accelerate's choice (accelerate launch --mixed_precision, or the accelerate config file), else auto. Losses "
        "always run in fp32; the run prints which precision applied and why, and records it.",
    )
    seed: int = key(0, help="Seed of initialisation, data order, augmentation, gates.")
    sampler: str = key(
        "shuffle",
        metavar=choice_metavar(SAMPLERS),
        help="shuffle (published), balanced (datasets equally often) or m_per_class (pair losses).",
    )
    samples_per_class: int = key(4, help="Images per class in a batch for m_per_class.")
    # --- augmentation (the paper's recipe) ---
    crop_scale: list[float] = key(
        default_factory=lambda: list(TRAIN_CROP_SCALE),
        before=list(TRAIN_CROP_SCALE),
        help="Area range of the training RandomResizedCrop, as fractions of the image: low high.",
    )
    hflip_probability: float = key(
        TRAIN_HFLIP_PROBABILITY,
        before=TRAIN_HFLIP_PROBABILITY,
        help="Probability of a horizontal flip in training.",
    )
    num_workers: int = key(0, role=CONTROL, aliases=("dataloader_num_workers",), help="DataLoader worker processes.")
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
        refused={
            name: "evaluations come every eval_every_epochs epochs (0: only the final one), not every N steps."
            for name in ("eval_steps", "eval_strategy")
        },
        help="Also evaluate every N epochs (0: only at the end): the validation split where the data has one, "
        "else the test split.",
    )
    eval_split: str = key(
        TEST_SPLIT,
        role=RESULT,
        before=TEST_SPLIT,
        metavar=choice_metavar(SCORED_SPLITS),
        help="Split the final evaluation scores: test (the published protocol) or validation.",
    )
    eval_batch_size: int = key(
        256,
        role=CONTROL,
        aliases=("per_device_eval_batch_size",),
        help="Images per process in a forward pass when embedding the scored split.",
    )
    eval_ks: list[int] = key(
        default_factory=lambda: [1, 2, 4, 8],
        role=CONTROL,
        help="k of Recall@k (--eval_ks 1 4, or a YAML list). Each must fit the smallest gallery a query searches "
        "(itself excluded): a larger k stops the run before training, naming that gallery.",
    )
    log_every_steps: int = key(
        10, role=CONTROL, aliases=("logging_steps",), help="Tracker and train_log.jsonl interval in steps."
    )
    report_to: list[str] | str = key(
        default_factory=lambda: ["tensorboard"],
        role=CONTROL,
        metavar="NAME ...",
        help="Accelerate trackers (tensorboard, wandb, mlflow, ...; none or [] for none).",
    )
    progress_bar: bool = key(
        True,
        role=CONTROL,
        aliases=(flag_alias("disable_tqdm", False, True),),
        help="Show a progress bar on the main process.",
    )
    save_every_steps: int = key(
        500, role=CONTROL, aliases=("save_steps",), help="Checkpoint interval in steps (0: only at the end)."
    )
    save_total_limit: int = key(2, role=CONTROL, help="Complete checkpoints kept (the newest).")
    resume: bool | str = key(
        False,
        role=CONTROL,
        aliases=("resume_from_checkpoint",),
        metavar="{true,false,PATH}",
        help="true: continue from the newest complete checkpoint of output_dir; or a checkpoint folder's path.",
    )
    push_to_hub: bool = key(False, role=CONTROL, help="Upload the final adapter folder to the Hub.")
    hub_model_id: str | None = key(None, role=CONTROL, metavar="REPO_ID", help="Hub repository for push_to_hub.")
    hub_private_repo: bool = key(
        False,
        role=CONTROL,
        help="Create the push_to_hub repository private (an existing repository keeps its visibility).",
    )

    def validate(self) -> TrainingConfig:
        """Check every key; raise :class:`InvalidConfigError` naming the first mistake. Returns ``self``."""
        if self.mixed_precision is False:  # YAML reads an unquoted `no` as false: the value `no` is meant
            self.mixed_precision = "no"
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
        if self.max_steps is not None and self.max_steps <= 0:
            raise InvalidConfigError(
                f"max_steps must be positive or null (all epochs), got {self.max_steps!r}"
                + (" (TrainingArguments' -1 is null here)." if self.max_steps == -1 else ".")
            )
        check_positive_or_none("cpu_threads", self.cpu_threads)
        check_positive("save_total_limit", self.save_total_limit)
        self._validate_optimiser()
        if self.mixed_precision is not None:
            check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION_CHOICES)
        self._validate_compilation()
        check_choice("eval_split", self.eval_split, SCORED_SPLITS)
        self._validate_augmentation()
        if not self.eval_ks or any(k < 1 for k in self.eval_ks):
            raise InvalidConfigError(f"eval_ks must be a non-empty list of positive integers, got {self.eval_ks!r}.")
        if isinstance(self.report_to, str):  # TrainingArguments' habit: one tracker by name, or none
            self.report_to = [self.report_to]
        if self.resume and self.overwrite_output_dir:
            raise InvalidConfigError(
                "resume continues the run in output_dir, overwrite_output_dir starts it afresh: give one of them "
                "(--overwrite_output_dir false, or --resume false)."
            )
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
            guess = did_you_mean(unknown[0], accepted)
            hint = f" (did you mean puma.{guess}?)" if guess else ""
            raise InvalidConfigError(
                f"Unknown PUMAConfig fields {unknown} in puma{hint}; accepted fields: {', '.join(accepted)} "
                "(docs/puma.md)."
            )
        return {name: coerce(f"puma.{name}", value, accepted[name].hint) for name, value in self.puma.items()}

    def puma_config(self) -> PUMAConfig:
        """The :class:`PUMAConfig` the method is built with: its preset (for a baseline, PUMA's head alone) with the
        ``puma`` entries. An entry that contradicts one of the preset's defining fields is refused, naming both:
        ``--method static_adapter --puma.keep_prob 0.5`` would not be the static adapter. So is an entry the method
        does not use (:func:`unused_puma_fields`): ``--method lora --puma.keep_prob 0.3`` would change nothing."""
        preset = preset_of(self.method)
        entries = self.puma_entries()
        for name, (fixed, given) in preset_conflicts(preset, entries).items():
            raise InvalidConfigError(
                f"method {self.method!r} fixes puma.{name} to {fixed!r}, but the config sets puma.{name}: {given!r}. "
                f"Drop puma.{name}, or choose a method that leaves it free (puma)."
            )
        config = PUMAConfig.from_preset(preset, **entries)
        for name, why in unused_puma_fields(self.method, config, self.lora_r).items():
            if name in entries:
                raise InvalidConfigError(
                    f"method {self.method!r} does not use puma.{name} ({why}), so the config's puma.{name}: "
                    f"{entries[name]!r} would change nothing. Drop puma.{name}, or {_methods_using(name)}."
                )
        return config

    def for_method(self, method: str) -> TrainingConfig:
        """This run with another ``method``, everything else the same: the ``puma`` entries the new method's preset
        fixes, or that the new method does not use, are left out (a benchmark that trains every method from one
        config file changes only the method; ``--method single_prompt`` on a config that sizes the prompt pool still
        gives one prompt, and ``linear`` on a config that sizes the adapters trains PUMA's head)."""
        if method not in METHOD_NAMES:
            return dataclasses.replace(self, method=method)
        preset = preset_of(method)
        fixed = PUMA_PRESETS[preset]
        candidate = dataclasses.replace(
            self, method=method, puma={name: value for name, value in self.puma.items() if name not in fixed}
        )
        config = PUMAConfig.from_preset(preset, **candidate.puma_entries())
        unused = unused_puma_fields(method, config, self.lora_r)
        return dataclasses.replace(
            candidate, puma={name: value for name, value in candidate.puma.items() if name not in unused}
        )

    def _validate_compilation(self) -> None:
        if self.torch_compile_mode is not None:
            check_choice("torch_compile_mode", self.torch_compile_mode, TORCH_COMPILE_MODES)
        if self.torch_compile:
            import torch._dynamo  # only when asked: listing the backends imports the compiler stack

            check_choice("torch_compile_backend", self.torch_compile_backend, torch._dynamo.list_backends(None))

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
