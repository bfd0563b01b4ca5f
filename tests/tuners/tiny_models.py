"""Tiny random backbones of every supported family, built from configs (no downloads)."""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    DeiTModel,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

HIDDEN, LAYERS, HEADS, IMAGE, PATCH = 32, 2, 2, 16, 4
NUM_PATCHES = (IMAGE // PATCH) ** 2
COMMON = dict(
    hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, image_size=IMAGE, patch_size=PATCH
)


def vit_config(**overrides) -> ViTConfig:
    return ViTConfig(**{**COMMON, "intermediate_size": 64, "qkv_bias": True, "layer_norm_eps": 1e-6, **overrides})


def make_vit(**overrides) -> ViTModel:
    torch.manual_seed(0)
    return ViTModel(vit_config(**overrides), add_pooling_layer=False).eval()


def load_backbone(path) -> ViTModel:
    """A saved tiny ViT loaded back, frozen-backbone style (no pooler, eval mode)."""
    return ViTModel.from_pretrained(path, add_pooling_layer=False).eval()


# name -> (factory taking config overrides, number of prefix tokens)
FAMILIES = {
    "vit": (lambda **o: ViTModel(vit_config(**o), add_pooling_layer=False), 1),
    "vit_classifier": (lambda **o: ViTForImageClassification(vit_config(num_labels=5, **o)), 1),
    "deit": (lambda **o: DeiTModel(DeiTConfig(**{**COMMON, "intermediate_size": 64, **o}), add_pooling_layer=False), 2),
    "deit_teacher": (
        lambda **o: DeiTForImageClassificationWithTeacher(DeiTConfig(**{**COMMON, "intermediate_size": 64, **o})),
        2,
    ),
    "dinov2": (lambda **o: Dinov2Model(Dinov2Config(**{**COMMON, "mlp_ratio": 2, **o})), 1),
    "dinov2_registers": (
        lambda **o: Dinov2WithRegistersModel(
            Dinov2WithRegistersConfig(**{**COMMON, "mlp_ratio": 2, "num_register_tokens": 3, **o})
        ),
        4,
    ),
    "clip": (lambda **o: CLIPVisionModel(CLIPVisionConfig(**{**COMMON, "intermediate_size": 64, **o})), 1),
    "clip_projection": (
        lambda **o: CLIPVisionModelWithProjection(
            CLIPVisionConfig(**{**COMMON, "intermediate_size": 64, "projection_dim": 16, **o})
        ),
        1,
    ),
}


def make_family(name: str, **config_overrides):
    """A tiny random model of one family; ``config_overrides`` replace fields of its config (``num_hidden_layers``)."""
    torch.manual_seed(0)
    return FAMILIES[name][0](**config_overrides).eval()


def randomize_adapters(model, seed: int = 0) -> None:
    """Give every trainable tensor random values, so tests see adapters that actually change the output (U = 0 at
    init would make every adapter check trivially pass)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
