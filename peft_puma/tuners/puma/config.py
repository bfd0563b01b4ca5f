"""Configuration of the PUMA tuner (arXiv 2309.08944) and the published variants as presets."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from peft.config import PeftConfig

from ...errors import IncompatibleCheckpointError, InvalidConfigError
from .model_card import update_model_card
from .registration import PEFT_TYPE, TASK_TYPE

SAFETENSORS_WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
_PICKLE_WEIGHTS_NAMES = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")


@dataclass
class PUMAConfig(PeftConfig):
    """Configuration of a PUMA adapter: stochastic adapters, a conditional prompt pool and an embedding head.

    Every default is the published method (arXiv 2309.08944), so ``PUMAConfig()`` on a ViT-S/16 gives
    exactly 2,485,376 trainable parameters. The ablations of the paper's Table 3 are field changes: ``keep_prob=1.0``
    is the static adapter, ``num_prompts=1`` the single (unconditional) prompt, ``use_prompts=False`` /
    ``use_adapters=False`` remove a part; see :data:`PUMA_PRESETS` for them by name.
    """

    # --- stochastic adapters (arXiv 2309.08944) ---
    use_adapters: bool = field(
        default=True,
        metadata={"help": "Add a bottleneck adapter in parallel with every attention and MLP block. Default: True."},
    )
    r: int = field(default=128, metadata={"help": "Adapter bottleneck width r (D is d x r, U is r x d). Default: 128."})
    scale: float = field(
        default=0.1, metadata={"help": "Adapter output scale s, applied to both branches. Default: 0.1 (published)."}
    )
    train_scale: bool = field(
        default=False,
        metadata={
            "help": "Learn s per adapter branch (initialised at `scale`) instead of keeping it fixed. Default: False."
        },
    )
    keep_prob: float = field(
        default=0.5,
        metadata={
            "help": "Bernoulli keep probability p of each adapter's per-sample gate in training; a kept branch is "
            "divided by p, and at eval every adapter is on. 1.0 gives the static adapter (Table 3). Default: 0.5."
        },
    )
    layers: list[int] | None = field(
        default=None,
        metadata={"help": "Indices of the transformer layers that get adapters; None means all. Default: None."},
    )
    # --- conditional prompt pool (arXiv 2309.08944) ---
    use_prompts: bool = field(
        default=True,
        metadata={"help": "Insert prompt tokens after the prefix (CLS) tokens at the input layer. Default: True."},
    )
    num_prompts: int = field(
        default=20,
        metadata={
            "help": "Prompt-pool size M. M > 1: prompts mixed per image by cosine attention; M = 1: a single "
            "unconditional prompt with no keys or attention vectors (Table 3 'Sing.'). Default: 20."
        },
    )
    prompt_length: int = field(default=8, metadata={"help": "Tokens per prompt L. Default: 8."})
    regularization_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the orthogonality regulariser 1e-6 * (ortho(K) + ortho(A) + ortho(P)) that "
            "`regularization_loss()` returns for the training loop to add. Default: 1.0."
        },
    )
    # --- embedding head (arXiv 2309.08944) ---
    embedding_size: int = field(
        default=128, metadata={"help": "Output size of the Linear embedding head (L2-normalised). Default: 128."}
    )

    # --- provenance ---
    backbone_family: str | None = field(
        default=None,
        metadata={
            "help": "Backbone family the adapter was made for (vit, deit, dinov2, clip): recorded when the adapter "
            "is first injected and checked when it is loaded, since adapters do not transfer across architectures. "
            "Default: None (record on first use)."
        },
    )

    def __new__(cls, *args: Any, **kwargs: Any) -> PUMAConfig:
        # Every way of building a config passes here first: PUMAConfig(...), from_any, and PEFT's loaders
        # (PeftModel.from_pretrained, PeftConfig.from_pretrained), which catch the TypeError of an unknown keyword,
        # drop the key and only warn. An InvalidConfigError is not a TypeError, so it reaches the user.
        _refuse_unknown_fields(cls, kwargs)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        if self.task_type is None:
            self.task_type = TASK_TYPE
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        self._validate()

    def _validate(self) -> None:
        for name in ("use_adapters", "train_scale", "use_prompts"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidConfigError(f"PUMAConfig.{name} must be True or False, got {getattr(self, name)!r}.")
        for name in ("r", "num_prompts", "prompt_length", "embedding_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfigError(f"PUMAConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("scale", "regularization_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidConfigError(f"PUMAConfig.{name} must be a finite number, got {value!r}.")
        if self.scale <= 0:  # s = 0 turns every adapter off (and its gradients); s < 0 is no scale of the paper
            raise InvalidConfigError(
                f"PUMAConfig.scale is the adapter output scale s and must be > 0 (published: 0.1), got {self.scale!r}."
            )
        if self.regularization_weight < 0:
            raise InvalidConfigError(
                f"PUMAConfig.regularization_weight must be >= 0, got {self.regularization_weight!r}."
            )
        p = self.keep_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
            raise InvalidConfigError(
                f"PUMAConfig.keep_prob is the Bernoulli keep probability p and must lie in (0, 1], got {p!r} "
                "(1.0 is the static adapter)."
            )
        if self.layers is not None:
            layers = list(self.layers)
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers):
                raise InvalidConfigError(
                    f"PUMAConfig.layers must be None (all layers) or a non-empty list of layer indices >= 0, "
                    f"got {self.layers!r}."
                )
            if len(set(layers)) != len(layers):
                raise InvalidConfigError(f"PUMAConfig.layers has repeated indices: {self.layers!r}.")
            self.layers = sorted(layers)

    @property
    def target_modules(self) -> None:
        """PUMA's targets come from the backbone-family table (families.py); PEFT's generic code reads this name."""
        return None

    @property
    def conditional_prompts(self) -> bool:
        """Whether prompts are mixed per image (M > 1) or one prompt is shared by every image (M = 1)."""
        return self.num_prompts > 1

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, **kwargs)
        update_model_card(save_directory, self)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, subfolder: str | None = None, **kwargs: Any):
        """Load the config and make sure the adapter beside it is safetensors: PUMA never unpickles weights."""
        _require_safetensors_weights(pretrained_model_name_or_path, subfolder, kwargs)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        except InvalidConfigError as error:
            where = (
                os.path.join(pretrained_model_name_or_path, subfolder) if subfolder else pretrained_model_name_or_path
            )
            raise InvalidConfigError(f"The adapter_config.json of {where}: {error}") from None

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PUMAConfig:
        """A published variant by name (see :data:`PUMA_PRESETS`), with field overrides of the fields it leaves free.

        An override that contradicts one of the fields that define the preset is refused, naming both: a
        ``static_adapter`` with ``keep_prob=0.5`` would not be the static adapter of the paper's Table 3.
        """
        conflicts = preset_conflicts(name, overrides)
        if conflicts:
            field_name, (fixed, given) = next(iter(conflicts.items()))
            raise InvalidConfigError(
                f"PUMA preset {name!r} fixes {field_name}={fixed!r}, got {field_name}={given!r}. Drop "
                f"{field_name}, or start from a preset that leaves it free (puma)."
            )
        return cls(**{**PUMA_PRESETS[name], **overrides})

    @classmethod
    def from_any(cls, source: PUMAConfig | str | os.PathLike | dict[str, Any] | None = None, **overrides: Any):
        """One factory for every way a user names a config: a config, a preset name, a dict, a JSON file or folder."""
        if source is None:
            return cls(**overrides)
        if isinstance(source, PUMAConfig):
            return cls(**{**_init_fields(source.to_dict()), **overrides})
        if isinstance(source, dict):
            return cls(**{**_init_fields(source), **overrides})
        source = os.fspath(source)
        if source in PUMA_PRESETS:
            return cls.from_preset(source, **overrides)
        path = os.path.join(source, CONFIG_NAME) if os.path.isdir(source) else source
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return cls(**{**_init_fields(json.load(handle)), **overrides})
        config = cls.from_pretrained(source)
        return cls(**{**_init_fields(config.to_dict()), **overrides})


def _init_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Keep the fields a PUMAConfig is built from; unknown keys are an error, not silently dropped."""
    values = {k: v for k, v in values.items() if k not in {"peft_type", "auto_mapping"}}
    _refuse_unknown_fields(PUMAConfig, values)
    return values


def _refuse_unknown_fields(cls: type, values: dict[str, Any]) -> None:
    """Refuse keys that are no field of ``cls``: a typo or a config written by another version is an error."""
    names = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidConfigError(
            f"Unknown {cls.__name__} fields {unknown}; accepted fields: {sorted(names)}. If they come from a saved "
            "adapter_config.json, it was not written by this version of peft_puma: remove them, or load it with the "
            "version that wrote it."
        )


def _require_safetensors_weights(path_or_id: str, subfolder: str | None, kwargs: dict[str, Any]) -> None:
    folder = os.path.join(path_or_id, subfolder) if subfolder else path_or_id
    if os.path.isdir(folder):
        if os.path.isfile(os.path.join(folder, SAFETENSORS_WEIGHTS_NAME)):
            return
        pickled = [name for name in _PICKLE_WEIGHTS_NAMES if os.path.isfile(os.path.join(folder, name))]
        if pickled:
            raise IncompatibleCheckpointError(
                f"{folder} holds {pickled[0]}, a pickle file; PUMA loads only {SAFETENSORS_WEIGHTS_NAME} because "
                "unpickling can execute code. Convert it once, in a trusted environment, with "
                "safetensors.torch.save_file."
            )
        # A folder with only adapter_config.json is a valid config-only load; the weights check happens on load.
        return
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "token") if k in kwargs}
    try:
        hf_hub_download(path_or_id, SAFETENSORS_WEIGHTS_NAME, subfolder=subfolder, **hub_kwargs)
    except EntryNotFoundError as error:
        raise IncompatibleCheckpointError(
            f"{path_or_id} has no {SAFETENSORS_WEIGHTS_NAME}; PUMA loads only safetensors adapters (never pickles)."
        ) from error


# The published variants (paper Table 3) and the baselines that share PUMA's head, by name.
def preset_conflicts(name: str, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (the preset's value, the given value)}`` for each given value that contradicts a field defining the
    preset ``name`` (unknown names: :class:`InvalidConfigError` listing the presets)."""
    if name not in PUMA_PRESETS:
        raise InvalidConfigError(f"Unknown PUMA preset {name!r}; known presets: {', '.join(sorted(PUMA_PRESETS))}.")
    defining = PUMA_PRESETS[name]
    return {key: (defining[key], value) for key, value in values.items() if key in defining and value != defining[key]}


PUMA_PRESETS: dict[str, dict[str, Any]] = {
    "puma": {},
    "stochastic_adapter": {"use_prompts": False},
    "static_adapter": {"use_prompts": False, "keep_prob": 1.0},
    "conditional_prompt": {"use_adapters": False},
    "single_prompt": {"use_adapters": False, "num_prompts": 1},
    "single_prompt_static_adapter": {"num_prompts": 1, "keep_prob": 1.0},
    "linear": {"use_adapters": False, "use_prompts": False},
}
