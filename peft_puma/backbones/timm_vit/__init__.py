"""Load timm ViT checkpoints (safetensors only) into HF transformers ViT classes, without timm installed.

Why: the paper's backbone (docs/spec.md section 1) is timm's ``vit_small_patch16_224.augreg_in21k_ft_in1k`` (ViT-S/16,
ImageNet-21k pretrained, ImageNet-1k fine-tuned, qkv bias, LayerNorm eps 1e-6). timm pulls torchvision, which does not
import beside our torch, so we map timm's tensors onto ``transformers.ViTModel`` ourselves. One call gives the published
setup::

    model = load_timm_vit("timm/vit_small_patch16_224.augreg_in21k_ft_in1k")

The mapping is exact: a timm ``VisionTransformer`` with a class token, token pooling and plain pre-norm blocks
(``x = x + attn(norm1(x)); x = x + mlp(norm2(x))``, fused qkv, exact GELU, final ``norm``) is the same network as HF's
ViT. Variants that HF's ViT cannot express are refused by name instead of being loaded approximately.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import RemoteEntryNotFoundError
from safetensors.torch import load_file
from transformers import ViTConfig, ViTForImageClassification, ViTModel
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import PILImageResampling
from transformers.utils import is_torchvision_available

from ...errors import (
    ForeignContentError,
    IncompatibleCheckpointError,
    InvalidConfigError,
    UnsupportedModelError,
)
from ...owned_paths import OwnedLayout, discard_staging, make_staging_folder, move_into_place

__all__ = [
    "TimmCheckpoint",
    "convert_timm_vit_checkpoint",
    "convert_timm_vit_state_dict",
    "load_timm_vit",
    "load_timm_vit_with_processor",
    "read_timm_checkpoint",
    "timm_image_processor",
]

SUPPORTED_ARCHITECTURES = "timm `vit_*` / `deit_*` VisionTransformer with a class token and token pooling"

# timm size word -> (embed_dim, num_heads). Heads cannot be read from the tensors, so they come from the architecture
# name, or from the width when it is one of timm's standard widths (each width below has one head count in timm).
_TIMM_SIZES: Mapping[str, tuple[int, int]] = {
    "tiny": (192, 3),
    "wee": (256, 4),
    "pwee": (256, 4),
    "little": (320, 5),
    "small": (384, 6),
    "medium": (512, 8),
    "mediumd": (512, 8),
    "betwixt": (640, 10),
    "base": (768, 12),
    "large": (1024, 16),
    "huge": (1280, 16),
    "giant": (1408, 16),
    "gigantic": (1664, 16),
}
_HEADS_BY_WIDTH: Mapping[int, int] = {width: heads for width, heads in _TIMM_SIZES.values()}
_ARCHITECTURE_PATTERN = re.compile(r"^(?:vit|deit)_(?P<size>[a-z]+)_(?:distilled_)?patch\d+")

# timm key fragment -> the feature it reveals, for every timm ViT option that HF's ViT has no module for.
_UNSUPPORTED_FEATURES: tuple[tuple[str, str], ...] = (
    ("fc_norm.", "a global-average-pool head (`fc_norm`)"),
    ("attn_pool.", "an attention-pool (MAP) head"),
    ("reg_token", "register tokens"),
    ("dist_token", "a distillation token (DeiT distilled)"),
    (".ls1.", "layer scale (`ls1.gamma`, `ls2.gamma`)"),
    (".ls2.", "layer scale (`ls1.gamma`, `ls2.gamma`)"),
    (".attns.", "parallel attention/MLP branches"),
    ("norm_pre.", "a LayerNorm before the blocks (`norm_pre`, CLIP-style)"),
    ("patch_embed.norm.", "a normalised patch embedding"),
    (".attn.q_norm.", "query/key normalisation"),
    (".attn.norm.", "a normalisation inside attention"),
    (".mlp.norm.", "a normalisation inside the MLP"),
    (".mlp.fc1_g.", "a gated (SwiGLU) MLP"),
    ("head.fc.", "a representation layer before the head"),
    ("pre_logits.", "a representation layer before the head"),
)

# Where timm's non-block tensors live in HF's ViTModel (identical in every transformers layout).
_EMBEDDING_NAMES: Mapping[str, str] = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",  # HF's final `layernorm` is timm's `norm`
    "norm.bias": "layernorm.bias",
}


@dataclass(frozen=True)
class _BlockLayout:
    """Where the parts of one timm block live in one transformers ViT layout (``{i}`` is the block index)."""

    block: str
    parts: Mapping[str, str]


# transformers renamed ViT's modules in 5.9; the installed layout is detected, so both are filled exactly.
_HF_LAYOUTS: Mapping[str, _BlockLayout] = {
    "transformers>=5.9": _BlockLayout(
        block="layers.{i}.",
        parts={
            "norm1": "layernorm_before",
            "q": "attention.q_proj",
            "k": "attention.k_proj",
            "v": "attention.v_proj",
            "attn.proj": "attention.o_proj",
            "norm2": "layernorm_after",
            "mlp.fc1": "mlp.fc1",
            "mlp.fc2": "mlp.fc2",
        },
    ),
    "transformers<5.9": _BlockLayout(
        block="encoder.layer.{i}.",
        parts={
            "norm1": "layernorm_before",
            "q": "attention.attention.query",
            "k": "attention.attention.key",
            "v": "attention.attention.value",
            "attn.proj": "attention.output.dense",
            "norm2": "layernorm_after",
            "mlp.fc1": "intermediate.dense",
            "mlp.fc2": "output.dense",
        },
    ),
}

# timm's `vision_transformer._cfg` defaults, used for a bare .safetensors file that comes without its config.json.
_TIMM_VIT_DEFAULT_PREPROCESSING: Mapping[str, Any] = {
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bicubic",
    "crop_pct": 0.9,
    "crop_mode": "center",
}
_RESAMPLING: Mapping[str, PILImageResampling] = {
    "nearest": PILImageResampling.NEAREST,
    "bilinear": PILImageResampling.BILINEAR,
    "bicubic": PILImageResampling.BICUBIC,
    "lanczos": PILImageResampling.LANCZOS,
}
_PICKLE_SUFFIXES = frozenset({".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle"})
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class TimmCheckpoint:
    """The tensors of a timm checkpoint and the timm ``config.json`` beside them (empty for a bare file)."""

    state_dict: dict[str, torch.Tensor]
    timm_config: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def read_timm_checkpoint(source: str | os.PathLike[str], **hub_kwargs: Any) -> TimmCheckpoint:
    """Read a timm checkpoint from a local ``.safetensors`` file, a local folder, or a Hub id (``timm/...``).

    Only safetensors is read: pickle files (``.bin``, ``.pth``...) can run code when loaded, so they are refused.
    ``hub_kwargs`` (``revision``, ``cache_dir``, ``token``, ``local_files_only``...) go to ``hf_hub_download``.
    """
    weights, config_file = _resolve_files(source, hub_kwargs)
    timm_config = _read_timm_config(config_file) if config_file is not None else {}
    return TimmCheckpoint(state_dict=load_file(str(weights)), timm_config=timm_config, source=str(source))


def _resolve_files(source: str | os.PathLike[str], hub_kwargs: dict[str, Any]) -> tuple[Path, Path | None]:
    path = Path(source)
    if path.is_file():
        _refuse_non_safetensors(path)
        return path, None
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
            hint = f" It holds pickle checkpoints {pickles}, which are never read." if pickles else ""
            raise IncompatibleCheckpointError(f"Folder {path} has no model.safetensors.{hint}")
        config_file = path / "config.json"
        return weights, config_file if config_file.is_file() else None
    repo_id = str(source).removeprefix("hf-hub:")
    if not _HUB_ID.match(repo_id):
        raise IncompatibleCheckpointError(
            f"{source!r} is neither an existing .safetensors file or folder nor a Hub id like "
            "'timm/vit_small_patch16_224.augreg_in21k_ft_in1k'."
        )
    try:
        weights = Path(hf_hub_download(repo_id, "model.safetensors", **hub_kwargs))
    except RemoteEntryNotFoundError as error:
        raise IncompatibleCheckpointError(
            f"Hub repo {repo_id} has no model.safetensors; only safetensors checkpoints are read, never pickle."
        ) from error
    try:
        config_file: Path | None = Path(hf_hub_download(repo_id, "config.json", **hub_kwargs))
    except RemoteEntryNotFoundError:
        config_file = None
    return weights, config_file


def _refuse_non_safetensors(path: Path) -> None:
    if path.suffix == ".safetensors":
        return
    if path.suffix in _PICKLE_SUFFIXES:
        raise IncompatibleCheckpointError(
            f"{path} is a pickle checkpoint ({path.suffix}); only .safetensors is read, because unpickling can run "
            "arbitrary code. Use the safetensors file of the same checkpoint (timm Hub repos ship model.safetensors)."
        )
    raise IncompatibleCheckpointError(f"{path} is not a .safetensors file; only safetensors checkpoints are read.")


def _read_timm_config(config_file: Path) -> dict[str, Any]:
    timm_config = json.loads(config_file.read_text())
    if "architecture" not in timm_config and "model_type" in timm_config:
        raise UnsupportedModelError(
            f"{config_file} is a transformers config (model_type={timm_config['model_type']!r}), not a timm one: load "
            "that folder with the transformers class's from_pretrained instead."
        )
    return timm_config


def convert_timm_vit_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    timm_config: Mapping[str, Any] | None = None,
    num_attention_heads: int | None = None,
    model_class: type[ViTModel] | type[ViTForImageClassification] = ViTModel,
    layout: str | None = None,
) -> tuple[ViTConfig, dict[str, torch.Tensor]]:
    """Map a timm ViT state dict onto HF ViT names; infer the ``ViTConfig`` from the tensors.

    Args:
        state_dict: timm tensors (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.*``, ``norm``,
            ``head``).
        timm_config: the checkpoint's timm ``config.json`` (``architecture``, ``global_pool``, ``pretrained_cfg``...).
        num_attention_heads: needed only when neither the architecture name nor a standard width gives it.
        model_class: ``ViTModel`` (timm's ``head`` is dropped) or ``ViTForImageClassification`` (``head`` becomes
            ``classifier``, keys get the ``vit.`` prefix).
        layout: a key of ``_HF_LAYOUTS``; default: the installed transformers' layout.

    Raises:
        UnsupportedModelError: a timm variant HF's ViT cannot express, or an unsupported ``model_class``.
        IncompatibleCheckpointError: missing or unexpected keys, or tensors of the wrong shape.
        InvalidConfigError: the number of heads cannot be determined or does not divide the width; unknown layout.
    """
    timm_config = dict(timm_config or {})
    with_head = _is_classification(model_class)
    _refuse_unsupported_variant(state_dict, timm_config)
    config = _infer_config(state_dict, timm_config, num_attention_heads)
    _check_keys_and_shapes(state_dict, config)
    if with_head:
        if "head.weight" not in state_dict:
            raise IncompatibleCheckpointError(
                "The checkpoint has no classification head (timm num_classes=0); load it with ViTModel instead."
            )
        config.num_labels = state_dict["head.weight"].shape[0]
        label_names = timm_config.get("label_names")
        if isinstance(label_names, Sequence) and len(label_names) == config.num_labels:
            config.id2label = dict(enumerate(label_names))
            config.label2id = {name: index for index, name in config.id2label.items()}
    layout = layout or _installed_layout()
    if layout not in _HF_LAYOUTS:
        raise InvalidConfigError(f"layout={layout!r} is unknown; accepted: {sorted(_HF_LAYOUTS)}.")
    block_layout = _HF_LAYOUTS[layout]
    converted = _rename(state_dict, config, block_layout)
    if with_head:
        converted = {f"vit.{key}": tensor for key, tensor in converted.items()}
        converted["classifier.weight"] = state_dict["head.weight"]
        converted["classifier.bias"] = state_dict["head.bias"]
    return config, converted


def _is_classification(model_class: type) -> bool:
    if isinstance(model_class, type) and issubclass(model_class, ViTForImageClassification):
        return True
    if isinstance(model_class, type) and issubclass(model_class, ViTModel):
        return False
    raise UnsupportedModelError(
        f"model_class={model_class!r} is not supported; use ViTModel or ViTForImageClassification."
    )


def _refuse_unsupported_variant(state_dict: Mapping[str, torch.Tensor], timm_config: Mapping[str, Any]) -> None:
    """Refuse what HF's ViT cannot compute, naming the feature, so nothing is loaded approximately."""
    architecture = timm_config.get("architecture")
    if architecture is not None and not _ARCHITECTURE_PATTERN.match(architecture):
        raise UnsupportedModelError(
            f"timm architecture {architecture!r} is not supported; supported: {SUPPORTED_ARCHITECTURES}."
        )
    if any(key.startswith(("embeddings.", "vit.", "encoder.", "layers.")) for key in state_dict):
        raise UnsupportedModelError(
            "These tensors use transformers names, not timm names; "
            "load them with the transformers class's from_pretrained."
        )
    features = sorted({feature for fragment, feature in _UNSUPPORTED_FEATURES for key in state_dict if fragment in key})
    pool = timm_config.get("global_pool", (timm_config.get("model_args") or {}).get("global_pool", "token"))
    if pool not in ("token", None):
        features.append(f"global_pool={pool!r} (HF ViT pools the class token)")
    if "cls_token" not in state_dict and any(key.startswith("blocks.") for key in state_dict):
        features.append("no class token")
    if features:
        where = f"timm {architecture!r}" if architecture else "This timm checkpoint"
        raise UnsupportedModelError(
            f"{where} has {', '.join(features)}, which HF's ViT cannot express. Supported: {SUPPORTED_ARCHITECTURES} "
            "and plain pre-norm blocks (e.g. timm/vit_small_patch16_224.augreg_in21k_ft_in1k)."
        )


def _infer_config(
    state_dict: Mapping[str, torch.Tensor], timm_config: Mapping[str, Any], num_attention_heads: int | None
) -> ViTConfig:
    """Read every ViTConfig field off the tensors; only the number of heads needs the name (or the caller)."""
    required = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")
    if missing := [key for key in required if key not in state_dict]:
        raise IncompatibleCheckpointError(f"Not a timm ViT checkpoint: missing keys {missing}.")
    hidden_size = state_dict["cls_token"].shape[-1]
    patch_weight = state_dict["patch_embed.proj.weight"]
    if patch_weight.ndim != 4 or patch_weight.shape[0] != hidden_size:
        raise IncompatibleCheckpointError(
            f"patch_embed.proj.weight has shape {tuple(patch_weight.shape)}; expected ({hidden_size}, C, P, P)."
        )
    patch_size = (
        patch_weight.shape[2] if patch_weight.shape[2] == patch_weight.shape[3] else list(patch_weight.shape[2:])
    )
    depth = 1 + max(int(match[1]) for key in state_dict if (match := _BLOCK_KEY.match(key)))
    return ViTConfig(
        hidden_size=hidden_size,
        num_hidden_layers=depth,
        num_attention_heads=_num_heads(hidden_size, timm_config.get("architecture"), num_attention_heads),
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        hidden_act="gelu",  # timm's nn.GELU is the exact (erf) GELU, as is HF's "gelu"
        layer_norm_eps=1e-6,  # timm ViT's LayerNorm eps
        image_size=_image_size(state_dict["pos_embed"], patch_weight, timm_config),
        patch_size=patch_size,
        num_channels=patch_weight.shape[1],
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        encoder_stride=patch_weight.shape[2],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _num_heads(hidden_size: int, architecture: str | None, requested: int | None) -> int:
    if requested is not None:
        heads = requested
    elif architecture and (match := _ARCHITECTURE_PATTERN.match(architecture)) and match["size"] in _TIMM_SIZES:
        width, heads = _TIMM_SIZES[match["size"]]
        if width != hidden_size:
            raise IncompatibleCheckpointError(
                f"timm {architecture!r} should be {width} wide but the tensors are {hidden_size} wide."
            )
    elif hidden_size in _HEADS_BY_WIDTH:
        heads = _HEADS_BY_WIDTH[hidden_size]
    else:
        raise InvalidConfigError(
            f"Cannot tell the number of attention heads of a {hidden_size}-wide ViT (architecture={architecture!r}); "
            f"pass num_attention_heads. Known timm sizes: {dict(_TIMM_SIZES)}."
        )
    if heads <= 0 or hidden_size % heads:
        raise InvalidConfigError(f"num_attention_heads={heads} does not divide the hidden size {hidden_size}.")
    return heads


def _image_size(pos_embed: torch.Tensor, patch_weight: torch.Tensor, timm_config: Mapping[str, Any]) -> int | list[int]:
    """Image size from the position-embedding length (1 class slot + grid), preferring timm's input_size if it fits."""
    num_patches = pos_embed.shape[1] - 1
    patch_h, patch_w = patch_weight.shape[2], patch_weight.shape[3]
    input_size = timm_config.get("pretrained_cfg", {}).get("input_size")
    if input_size and len(input_size) == 3 and (input_size[1] // patch_h) * (input_size[2] // patch_w) == num_patches:
        height, width = int(input_size[1]), int(input_size[2])
        return height if height == width else [height, width]
    side = math.isqrt(max(num_patches, 0))
    if side * side != num_patches or side == 0:
        raise IncompatibleCheckpointError(
            f"pos_embed has {pos_embed.shape[1]} positions: not one class-token slot plus a square patch grid "
            "(timm no_embed_class / non-square grids without input_size in config.json are not supported)."
        )
    return side * patch_h if patch_h == patch_w else [side * patch_h, side * patch_w]


def _expected_timm_shapes(config: ViTConfig, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every key a plain timm ViT of this config has, with its shape: the contract of the strict load."""
    width, inner = config.hidden_size, config.intermediate_size
    patch_h, patch_w = (config.patch_size,) * 2 if isinstance(config.patch_size, int) else config.patch_size
    image_h, image_w = (config.image_size,) * 2 if isinstance(config.image_size, int) else config.image_size
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, 1 + (image_h // patch_h) * (image_w // patch_w), width),
        "patch_embed.proj.weight": (width, config.num_channels, patch_h, patch_w),
        "patch_embed.proj.bias": (width,),
        "norm.weight": (width,),
        "norm.bias": (width,),
    }
    block = {
        "norm1.weight": (width,),
        "norm1.bias": (width,),
        "attn.qkv.weight": (3 * width, width),
        "attn.proj.weight": (width, width),
        "attn.proj.bias": (width,),
        "norm2.weight": (width,),
        "norm2.bias": (width,),
        "mlp.fc1.weight": (inner, width),
        "mlp.fc1.bias": (inner,),
        "mlp.fc2.weight": (width, inner),
        "mlp.fc2.bias": (width,),
    }
    if config.qkv_bias:
        block["attn.qkv.bias"] = (3 * width,)
    for index in range(config.num_hidden_layers):
        shapes.update({f"blocks.{index}.{name}": shape for name, shape in block.items()})
    if num_classes:
        shapes.update({"head.weight": (num_classes, width), "head.bias": (num_classes,)})
    return shapes


def _check_keys_and_shapes(state_dict: Mapping[str, torch.Tensor], config: ViTConfig) -> None:
    head = state_dict.get("head.weight")
    num_classes = head.shape[0] if head is not None and head.ndim == 2 else 0
    expected = _expected_timm_shapes(config, num_classes)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise IncompatibleCheckpointError(
            f"timm ViT checkpoint does not match a plain {config.num_hidden_layers}-block ViT: "
            f"missing keys {_abbreviate(missing)}, unexpected keys {_abbreviate(unexpected)}."
        )
    wrong = [
        f"{key}: {tuple(state_dict[key].shape)} != {shape}"
        for key, shape in expected.items()
        if tuple(state_dict[key].shape) != shape
    ]
    if wrong:
        raise IncompatibleCheckpointError(f"timm ViT tensors of the wrong shape: {_abbreviate(wrong)}.")


def _abbreviate(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items) - limit} more)' if len(items) > limit else ''}]"


def _rename(state_dict: Mapping[str, torch.Tensor], config: ViTConfig, layout: _BlockLayout) -> dict[str, torch.Tensor]:
    """timm names -> HF ViTModel names; the fused qkv is split row-wise into q, k, v (timm's reshape order)."""
    converted = {hf_name: state_dict[timm_name] for timm_name, hf_name in _EMBEDDING_NAMES.items()}
    for index in range(config.num_hidden_layers):
        timm_block, hf_block = f"blocks.{index}.", layout.block.format(i=index)
        for part in ("norm1", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            for kind in ("weight", "bias"):
                converted[f"{hf_block}{layout.parts[part]}.{kind}"] = state_dict[f"{timm_block}{part}.{kind}"]
        for kind in ("weight", "bias") if config.qkv_bias else ("weight",):
            # clone: q, k, v must not share storage, or safetensors refuses to save them
            fused = state_dict[f"{timm_block}attn.qkv.{kind}"]
            for part, tensor in zip(("q", "k", "v"), fused.chunk(3, dim=0), strict=True):
                converted[f"{hf_block}{layout.parts[part]}.{kind}"] = tensor.clone()
    return converted


@functools.cache
def _installed_layout() -> str:
    """Which `_HF_LAYOUTS` entry the installed transformers uses, read off a 1-block probe model's keys."""
    probe = ViTConfig(
        hidden_size=4, num_hidden_layers=1, num_attention_heads=1, intermediate_size=4, image_size=2, patch_size=2
    )
    keys = set(ViTModel(probe, add_pooling_layer=False).state_dict())
    for name, layout in _HF_LAYOUTS.items():
        block = layout.block.format(i=0)
        if all(f"{block}{part}.weight" in keys for part in layout.parts.values()):
            return name
    raise UnsupportedModelError(f"The installed transformers' ViT layout is unknown (keys: {sorted(keys)[:8]}...).")


def timm_image_processor(timm_config: Mapping[str, Any] | None, image_size: int | Sequence[int]) -> BaseImageProcessor:
    """A ViT image processor reproducing timm's eval transform: resize by 1/crop_pct, centre crop, normalise.

    Why: PUMA's transforms must use the backbone's own statistics (AugReg: mean = std = 0.5, bicubic; DeiT/DINO:
    ImageNet statistics). Without a ``pretrained_cfg`` the defaults of timm's ``vision_transformer`` apply.
    """
    cfg = dict(_TIMM_VIT_DEFAULT_PREPROCESSING)
    timm_config = timm_config or {}
    cfg.update(
        {key: value for key, value in timm_config.get("pretrained_cfg", timm_config).items() if value is not None}
    )
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if cfg["interpolation"] not in _RESAMPLING:
        raise InvalidConfigError(
            f"timm interpolation {cfg['interpolation']!r} unknown; accepted: {sorted(_RESAMPLING)}."
        )
    scaled = (math.floor(height / cfg["crop_pct"]), math.floor(width / cfg["crop_pct"]))
    if cfg["crop_mode"] == "center" and height == width:
        size: dict[str, int] = {"shortest_edge": scaled[0]}  # timm: Resize(int) keeps the aspect ratio
    elif cfg["crop_mode"] == "squash":
        size = {"height": scaled[0], "width": scaled[1]}
    else:
        raise InvalidConfigError(
            f"timm crop_mode {cfg['crop_mode']!r} with input {height}x{width} has no ViT image-processor equivalent; "
            "accepted: 'center' (square input) or 'squash'."
        )
    # Without torchvision, transformers' ViTImageProcessor falls back to this PIL class anyway (with a warning).
    if is_torchvision_available():
        from transformers import ViTImageProcessor as processor_class
    else:
        from transformers import ViTImageProcessorPil as processor_class
    return processor_class(
        do_resize=True,
        size=size,
        resample=_RESAMPLING[cfg["interpolation"]],
        do_center_crop=True,
        crop_size={"height": height, "width": width},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(cfg["mean"]),
        image_std=list(cfg["std"]),
    )


def load_timm_vit_with_processor(
    source: str | os.PathLike[str],
    *,
    model_class: type[ViTModel] | type[ViTForImageClassification] = ViTModel,
    num_attention_heads: int | None = None,
    add_pooling_layer: bool = False,
    **hub_kwargs: Any,
) -> tuple[ViTModel | ViTForImageClassification, BaseImageProcessor]:
    """Like :func:`load_timm_vit`, and also the image processor carrying the checkpoint's own statistics."""
    checkpoint = read_timm_checkpoint(source, **hub_kwargs)
    config, hf_state_dict = convert_timm_vit_state_dict(
        checkpoint.state_dict,
        timm_config=checkpoint.timm_config,
        num_attention_heads=num_attention_heads,
        model_class=model_class,
    )
    if _is_classification(model_class):
        model = model_class(config)
        allowed_missing: set[str] = set()
    else:
        # timm has no pooler: HF's ViTModel pooler would be random, so it is only built when asked for.
        model = model_class(config, add_pooling_layer=add_pooling_layer)
        allowed_missing = {"pooler.dense.weight", "pooler.dense.bias"} if add_pooling_layer else set()
    result = model.load_state_dict(hf_state_dict, strict=False)
    missing, unexpected = sorted(set(result.missing_keys) - allowed_missing), sorted(result.unexpected_keys)
    if missing or unexpected:
        raise IncompatibleCheckpointError(
            f"Converted checkpoint does not fill {model_class.__name__}: missing {_abbreviate(missing)}, "
            f"unexpected {_abbreviate(unexpected)}."
        )
    model.eval()
    processor = timm_image_processor(checkpoint.timm_config, config.image_size)
    return model, processor


def load_timm_vit(
    source: str | os.PathLike[str],
    *,
    model_class: type[ViTModel] | type[ViTForImageClassification] = ViTModel,
    num_attention_heads: int | None = None,
    add_pooling_layer: bool = False,
    **hub_kwargs: Any,
) -> ViTModel | ViTForImageClassification:
    """Load a timm ViT checkpoint into ``model_class`` (in eval mode), e.g. the paper's backbone.

    Args:
        source: a Hub id (``timm/vit_small_patch16_224.augreg_in21k_ft_in1k``, optionally ``hf-hub:``-prefixed), a
            folder with ``model.safetensors`` (and timm's ``config.json``), or a bare ``.safetensors`` file.
        model_class: ``ViTModel`` (the default, for PUMA) or ``ViTForImageClassification`` (timm's head as
            ``classifier``).
        num_attention_heads: only for widths outside timm's standard sizes.
        add_pooling_layer: build HF's ViTModel pooler (newly initialised: timm has none). Off, as PUMA does not use it.
        hub_kwargs: passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``, ``token``...).
    """
    model, _ = load_timm_vit_with_processor(
        source,
        model_class=model_class,
        num_attention_heads=num_attention_heads,
        add_pooling_layer=add_pooling_layer,
        **hub_kwargs,
    )
    return model


def convert_timm_vit_checkpoint(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model_class: type[ViTModel] | type[ViTForImageClassification] = ViTModel,
    num_attention_heads: int | None = None,
    **hub_kwargs: Any,
) -> Path:
    """Write an HF-format folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) from timm.

    Why: afterwards the backbone and its statistics load with plain transformers calls, offline and without this
    module: ``ViTModel.from_pretrained(out_dir, add_pooling_layer=False)`` and ``AutoImageProcessor.from_pretrained``.
    """
    out = Path(out_dir)
    _refuse_foreign_folder(str(out))
    model, processor = load_timm_vit_with_processor(
        source, model_class=model_class, num_attention_heads=num_attention_heads, **hub_kwargs
    )
    model.config.timm_source = str(source)  # provenance, kept in config.json
    staging = make_staging_folder(str(out))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        move_into_place(staging, str(out), CONVERTED_LAYOUT)
    except BaseException:
        discard_staging(staging)
        raise
    return out


# A converted folder: an HF model folder whose config.json records the timm source it was converted from.
CONVERTED_LAYOUT = OwnedLayout.of(
    "a converted timm ViT", signature=["config.json"], others=["model.safetensors", "preprocessor_config.json"]
)


def _refuse_foreign_folder(out: str) -> None:
    """Only a folder this converter wrote (its config.json names a ``timm_source``) is ever replaced."""
    if CONVERTED_LAYOUT.is_owned(out):
        with open(os.path.join(out, "config.json"), encoding="utf-8") as handle:
            if "timm_source" not in json.load(handle):
                raise ForeignContentError(
                    f"{out} holds a model folder that this converter did not write (its config.json has no "
                    "timm_source). Nothing was touched: choose another --out."
                )
