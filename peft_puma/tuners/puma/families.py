"""What PUMA needs to know about each supported backbone family, in one table (arXiv 2309.08944).

PUMA touches five places of a pre-norm ViT: the patch projection (the prompt query reads it), the embeddings module
(prompts are inserted into its output), the two branches of every block (an adapter reads the branch's LayerNorm output
and adds to the branch's output), and the final LayerNorm (the head reads its CLS token). A :class:`BackboneFamily`
names those places; :func:`resolve_sites` turns a model into the concrete module paths, or explains why it cannot.
For the fused eval path (fusion.py, docs/fusion.md) a family also names the frozen linear layers inside each branch
(:class:`FusableBranch`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UnsupportedModelError


@dataclass(frozen=True)
class FusableBranch:
    """The frozen linear layers of one branch of a block, relative to the block, for the fused eval path (fusion.py).

    The adapter's down projection joins the ``inputs`` (they read the same LayerNorm output) as extra output columns;
    its up projection adds onto the result of ``output``. ``layer_scale``, where set, is the path of a vector that
    multiplies the branch's output before the adapter adds to it (DINOv2's LayerScale); it is folded into ``output``.
    """

    module: str  # the attention or MLP module of the block
    inputs: tuple[str, ...]  # linears of `module` that read the LayerNorm output: (q, k, v) or (fc1,)
    output: str  # the linear of `module` whose result is the branch output
    scaling: str | None = None  # attention: the attribute holding the softmax scale
    activation: str | None = None  # MLP: the activation module between `inputs` and `output`
    layer_scale: str | None = None  # path of the LayerScale vector after `module`, relative to the block


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
    attention_fusion: FusableBranch
    mlp_fusion: FusableBranch


def _learned_cls_position(embeddings: nn.Module) -> torch.Tensor:
    return embeddings.position_embeddings[0, 0]


def _clip_cls_position(embeddings: nn.Module) -> torch.Tensor:
    return embeddings.position_embedding.weight[0]


_QKV = ("q_proj", "k_proj", "v_proj")
_MLP_FUSION = FusableBranch("mlp", ("fc1",), "fc2", activation="activation_fn")


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
    attention_fusion=FusableBranch("attention", _QKV, "o_proj", scaling="scaling"),
    mlp_fusion=_MLP_FUSION,
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
    attention_fusion=FusableBranch("attention", _QKV, "o_proj", scaling="scaling", layer_scale="layer_scale1.lambda1"),
    # With `use_swiglu_ffn` the MLP has no fc1/fc2 (gate, up and down projections): that branch is left unfused.
    mlp_fusion=FusableBranch("mlp", ("fc1",), "fc2", activation="activation_fn", layer_scale="layer_scale2.lambda1"),
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
    attention_fusion=FusableBranch("self_attn", _QKV, "out_proj", scaling="scale"),
    mlp_fusion=_MLP_FUSION,
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
    """One adapter branch: the block index, the branch name, and the module paths of its block, LayerNorm and output."""

    layer: int
    branch: str  # "attention" or "mlp"
    norm: str
    output: str
    block: str

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
    num_attention_heads: int
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
            adapters.append(AdapterSite(index, branch, _join(block, norm), _join(block, output), block))
    return PUMASites(
        family=family,
        encoder=encoder_path,
        num_layers=num_layers,
        num_prefix_tokens=family.num_prefix_tokens(config),
        hidden_size=int(config.hidden_size),
        num_attention_heads=int(config.num_attention_heads),
        adapters=tuple(adapters),
        embeddings=_join(encoder_path, family.embeddings),
        patch_projection=_join(encoder_path, family.patch_projection),
        final_norm=_join(encoder_path, family.final_norm),
    )
