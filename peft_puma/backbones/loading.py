"""Loading the frozen backbone and its image processor by name (docs/spec.md section 1).

Two kinds of source: a transformers model (folder or Hub id: ViT, DeiT, DINOv2, CLIP vision), or a timm ViT
checkpoint (the paper's ``timm/vit_small_patch16_224.augreg_in21k_ft_in1k``), read into transformers' ``ViTModel``
by :mod:`peft_puma.backbones.timm_vit` without timm. The processor supplies the resolution and the normalisation
statistics of the transforms (docs/spec.md section 6). Used by training, inference and the benchmarks.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

import huggingface_hub.constants
import transformers
from torch import nn

from ..errors import IncompatibleCheckpointError, InvalidConfigError, PUMAError, UnsupportedModelError
from .timm_vit import load_timm_vit_with_processor

try:
    from safetensors import SafetensorError as _SafetensorError
except ImportError:  # pragma: no cover - older safetensors
    _SafetensorError = OSError

_TIMM_PREFIXES = ("timm/", "hf-hub:timm/")
BACKBONE_FORMATS: tuple[str, ...] = ("auto", "transformers", "timm")
_FIXED_RESOLUTION = ("vit", "deit")  # transformers' ViT and DeiT refuse another input size unless asked to interpolate


def resolve_backbone_format(source: str, backbone_format: str = "auto") -> str:
    """``"timm"`` or ``"transformers"``: a folder says so by its config.json; a Hub id under ``timm/`` is timm."""
    config_file = os.path.join(source, "config.json")
    if backbone_format == "timm" and _is_transformers_folder(config_file):
        raise InvalidConfigError(
            f"backbone_format is timm, but {source!r} is a transformers model folder (its config.json has a "
            "model_type); set backbone_format: auto (or transformers)."
        )
    if backbone_format != "auto":
        return backbone_format
    if os.path.isfile(config_file):
        try:
            with open(config_file, encoding="utf-8") as handle:
                config = json.load(handle)
        except ValueError as error:
            raise InvalidConfigError(
                f"The backbone's {config_file} is not valid JSON ({error}): it is damaged."
            ) from None
        # transformers configs carry `model_type`; timm's carry `architecture` and `pretrained_cfg`.
        return "transformers" if "model_type" in config else "timm"
    if source.endswith(".safetensors") or source.startswith(_TIMM_PREFIXES):
        return "timm"
    return "transformers"


def looks_local(source: str) -> bool:
    """Whether ``source`` names a local path rather than a Hub id: it exists, starts like a path (``.``, ``/``,
    ``~``), or lies in a folder that exists here (``assets/uml_mini_vitt`` is a mistyped folder, not a Hub id)."""
    if os.path.exists(source) or source.startswith((".", "/", "~")):
        return True
    parent = os.path.dirname(os.path.normpath(source))
    return bool(parent) and os.path.isdir(parent)


def _is_transformers_folder(config_file: str) -> bool:
    try:
        with open(config_file, encoding="utf-8") as handle:
            return "model_type" in json.load(handle)
    except (OSError, ValueError):
        return False


def load_backbone(source: str, backbone_format: str = "auto") -> tuple[nn.Module, Any]:
    """``(backbone in eval mode, image processor)`` for a transformers or timm source (see the module docstring)."""
    if looks_local(source) and not os.path.exists(os.path.expanduser(source)):
        raise InvalidConfigError(
            f"The backbone folder {source!r} does not exist (from {os.getcwd()!r}); give an existing model folder or "
            "a Hub id."
        )
    kind = resolve_backbone_format(source, backbone_format)
    if kind == "timm":
        try:
            backbone, processor = load_timm_vit_with_processor(source)
        except OSError as error:  # huggingface_hub's download errors are OSErrors: offline, missing, no access
            raise InvalidConfigError(_hub_failure(source, error)) from None
    else:
        backbone, processor = _load_transformers(source)
    # PEFT records this in adapter_config.json as the base model (timm loads leave it empty). A local folder is
    # recorded absolute: "assets/uml_mini_vit" would read as a Hub id from any other working directory.
    name = os.path.abspath(os.path.expanduser(source)) if looks_local(source) else source
    backbone.config._name_or_path = name
    backbone.name_or_path = name
    return backbone, processor


def _load_transformers(source: str) -> tuple[nn.Module, Any]:
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise InvalidConfigError(_hub_failure(source, error)) from None
    architecture = (getattr(config, "architectures", None) or [None])[0]
    model_class = getattr(transformers, architecture, None) if architecture else None
    if model_class is None:
        model_class = transformers.AutoModel
    kwargs = {}
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        kwargs["add_pooling_layer"] = False  # PUMA's head reads the final LayerNorm; a pooler would be unused
    try:
        backbone = model_class.from_pretrained(source, **kwargs)
    except Exception as error:  # a truncated file: OSError, RuntimeError or safetensors' own SafetensorError
        if isinstance(error, PUMAError) or not isinstance(
            error, OSError | ValueError | RuntimeError | _SafetensorError
        ):
            raise
        raise IncompatibleCheckpointError(
            f"The backbone weights of {source!r} cannot be loaded ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:200]}); the files are damaged or incomplete: download or copy them again."
        ) from None
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise UnsupportedModelError(
            f"Backbone {source!r} has no image processor (preprocessor_config.json): its resolution and "
            f"normalisation statistics are needed for the transforms ({error})."
        ) from None
    return backbone.eval(), processor


def _hub_failure(source: str, error: BaseException) -> str:
    """Why ``source`` could not be loaded, in one line: offline and not cached is said plainly."""
    if huggingface_hub.constants.HF_HUB_OFFLINE and not looks_local(source):
        return (
            f"Cannot load backbone {source!r}: it is no local folder, and the Hub is offline (HF_HUB_OFFLINE=1) "
            "with no cached copy of it. Give a local model folder, or cache it once online."
        )
    reason = " ".join(str(error).split())[:300].rstrip(".")
    return (
        f"Cannot load backbone {source!r}: {reason}. Give a transformers model folder or Hub id (offline: a cached "
        "one), or a timm ViT with backbone_format: timm."
    )


def check_resolution(backbone: nn.Module, image_size: int) -> None:
    """Refuse an input resolution smaller than one patch of ``backbone`` (or of the model wrapping it) before any
    image is read: the patch embedding's convolution would fail deep inside torch."""
    config = getattr(backbone, "config", None) or getattr(getattr(backbone, "model", None), "config", None)
    patch = getattr(config, "patch_size", None)
    patch = patch[0] if isinstance(patch, list | tuple) else patch
    if isinstance(patch, int) and image_size < patch:
        raise InvalidConfigError(
            f"image_size {image_size} is smaller than one {patch} x {patch} patch of the backbone; give at least "
            f"{patch} (the backbone's own resolution is the default)."
        )
    native = getattr(config, "image_size", None)
    if getattr(config, "model_type", None) in _FIXED_RESOLUTION and isinstance(native, int) and image_size != native:
        raise InvalidConfigError(
            f"image_size {image_size} differs from the {native} px this {config.model_type} backbone embeds (its "
            f"position embeddings are not interpolated); give image_size {native}, or null for the backbone's own."
        )
