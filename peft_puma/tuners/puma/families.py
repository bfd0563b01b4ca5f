"""What PUMA needs to know about each supported backbone family, in one table (arXiv 2309.08944).

PUMA touches five places of a pre-norm ViT: the patch projection (the prompt query reads it), the embeddings module
(prompts are inserted into its output), the two branches of every block (an adapter reads the branch's LayerNorm output
and adds to the branch's output), and the final LayerNorm (the head reads its CLS token). A :class:`BackboneFamily`
names those places; :func:`resolve_sites` turns a model into the concrete module paths, or explains why it cannot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UnsupportedModelError


@dataclass(frozen=True)
class BackboneFamily:
    """Module names of one ViT family, relative to its encoder model (e.g. ``ViTModel``)."""

    name: str
    layers: str  # the ModuleList of transformer blocks
    attention_branch: tuple[str, str]  # (LayerNorm LN1, module whose output is added to the residual)
    mlp_branch: tuple[str, str]  # (LayerNorm LN2, module whose output is added to the residual)
    embeddings: str
    patch_projection: str  # output E: (B, N, d) or a (B, d, h, w) map, before CLS and position embeddings
    final_norm: str
    cls_position: Callable[[nn.Module], torch.Tensor]  # embeddings module -> position embedding of CLS, shape (d,)
    num_prefix_tokens: Callable[[object], int]  # model config -> tokens before the patches (CLS, distillation, ...)


def _learned_cls_position(embeddings: nn.Module) -> torch.Tensor:
    return embeddings.position_embeddings[0, 0]


def _clip_cls_position(embeddings: nn.Module) -> torch.Tensor:
    return embeddings.position_embedding.weight[0]


_VIT = BackboneFamily(
    name="vit",
    layers="layers",
    attention_branch=("layernorm_before", "attention"),
    mlp_branch=("layernorm_after", "mlp"),
    embeddings="embeddings",
    patch_projection="embeddings.patch_embeddings",
    final_norm="layernorm",
    cls_position=_learned_cls_position,
    num_prefix_tokens=lambda config: 1,
)
_DEIT = BackboneFamily(
    **{**_VIT.__dict__, "name": "deit", "num_prefix_tokens": lambda config: 2}  # CLS + distillation token
)
_DINOV2 = BackboneFamily(
    name="dinov2",
    layers="encoder.layer",
    # LayerScale ends each branch, so the adapter joins after it: h = x + ls(Attn(LN1(x))) + adapter(LN1(x)).
    attention_branch=("norm1", "layer_scale1"),
    mlp_branch=("norm2", "layer_scale2"),
    embeddings="embeddings",
    patch_projection="embeddings.patch_embeddings",
    final_norm="layernorm",
    cls_position=_learned_cls_position,
    num_prefix_tokens=lambda config: 1 + getattr(config, "num_register_tokens", 0),
)
_CLIP = BackboneFamily(
    name="clip",
    layers="encoder.layers",
    attention_branch=("layer_norm1", "self_attn"),
    mlp_branch=("layer_norm2", "mlp"),
    embeddings="embeddings",
    patch_projection="embeddings.patch_embedding",
    final_norm="post_layernorm",  # applied to the CLS token only
    cls_position=_clip_cls_position,
    num_prefix_tokens=lambda config: 1,
)

# Supported top-level classes -> (path of the encoder model inside them, family).
SUPPORTED_MODELS: dict[str, tuple[str, BackboneFamily]] = {
    "ViTModel": ("", _VIT),
    "ViTForImageClassification": ("vit", _VIT),
    "DeiTModel": ("", _DEIT),
    "DeiTForImageClassification": ("deit", _DEIT),
    "DeiTForImageClassificationWithTeacher": ("deit", _DEIT),
    "Dinov2Model": ("", _DINOV2),
    "Dinov2WithRegistersModel": ("", _DINOV2),
    "CLIPVisionModel": ("", _CLIP),
    "CLIPVisionModelWithProjection": ("vision_model", _CLIP),
}

# Classes that look close but would be silently wrong, with the reason they are refused.
_REFUSED_REASONS: dict[str, str] = {
    "Dinov2ForImageClassification": "its head averages patch tokens; use Dinov2Model",
    "Dinov2WithRegistersForImageClassification": "its head averages patch tokens; use Dinov2WithRegistersModel",
    "Dinov2Backbone": "a spatial Backbone returns feature maps, not a CLS embedding; use Dinov2Model",
    "Dinov2WithRegistersBackbone": "a spatial Backbone returns feature maps; use Dinov2WithRegistersModel",
    "ViTForMaskedImageModeling": "masked image modeling replaces patches with mask tokens; use ViTModel",
    "DeiTForMaskedImageModeling": "masked image modeling replaces patches with mask tokens; use DeiTModel",
    "CLIPModel": "the joint text-image model; pass its vision tower (CLIPVisionModel) instead",
}


@dataclass(frozen=True)
class AdapterSite:
    """One adapter branch: the block index, the branch name, and the module paths of its LayerNorm and output."""

    layer: int
    branch: str  # "attention" or "mlp"
    norm: str
    output: str

    @property
    def canonical_name(self) -> str:
        return f"layers.{self.layer}.{self.branch}"


@dataclass(frozen=True)
class PUMASites:
    """Concrete module paths of one model (relative to the model handed to PUMA)."""

    family: BackboneFamily
    encoder: str
    num_layers: int
    num_prefix_tokens: int
    hidden_size: int
    adapters: tuple[AdapterSite, ...]
    embeddings: str
    patch_projection: str
    final_norm: str


def supported_model_names() -> str:
    return ", ".join(SUPPORTED_MODELS)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def resolve_sites(model: nn.Module, layers: list[int] | None = None) -> PUMASites:
    """Map a supported model to the module paths PUMA adapts; raise :class:`UnsupportedModelError` otherwise."""
    class_name = type(model).__name__
    if class_name not in SUPPORTED_MODELS:
        reason = _REFUSED_REASONS.get(class_name, "it is not a supported ViT-family image encoder")
        raise UnsupportedModelError(
            f"PUMA cannot adapt {class_name}: {reason}. Supported models: {supported_model_names()}."
        )
    encoder_path, family = SUPPORTED_MODELS[class_name]
    encoder = model.get_submodule(encoder_path) if encoder_path else model
    config = getattr(encoder, "config", None) or getattr(model, "config", None)
    blocks = encoder.get_submodule(family.layers)
    num_layers = len(blocks)
    selected = list(range(num_layers)) if layers is None else list(layers)
    out_of_range = [i for i in selected if i >= num_layers]
    if out_of_range:
        raise UnsupportedModelError(
            f"PUMAConfig.layers asks for layers {out_of_range}, but {class_name} has {num_layers} layers "
            f"(indices 0-{num_layers - 1})."
        )
    adapters = []
    for index in selected:
        block = _join(encoder_path, family.layers, str(index))
        for branch, (norm, output) in (("attention", family.attention_branch), ("mlp", family.mlp_branch)):
            adapters.append(AdapterSite(index, branch, _join(block, norm), _join(block, output)))
    return PUMASites(
        family=family,
        encoder=encoder_path,
        num_layers=num_layers,
        num_prefix_tokens=family.num_prefix_tokens(config),
        hidden_size=int(config.hidden_size),
        adapters=tuple(adapters),
        embeddings=_join(encoder_path, family.embeddings),
        patch_projection=_join(encoder_path, family.patch_projection),
        final_norm=_join(encoder_path, family.final_norm),
    )
