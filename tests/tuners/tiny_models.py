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


# name -> (factory, number of prefix tokens)
FAMILIES = {
    "vit": (lambda: ViTModel(vit_config(), add_pooling_layer=False), 1),
    "vit_classifier": (lambda: ViTForImageClassification(vit_config(num_labels=5)), 1),
    "deit": (lambda: DeiTModel(DeiTConfig(**COMMON, intermediate_size=64), add_pooling_layer=False), 2),
    "deit_teacher": (lambda: DeiTForImageClassificationWithTeacher(DeiTConfig(**COMMON, intermediate_size=64)), 2),
    "dinov2": (lambda: Dinov2Model(Dinov2Config(**COMMON, mlp_ratio=2)), 1),
    "dinov2_registers": (
        lambda: Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**COMMON, mlp_ratio=2, num_register_tokens=3)),
        4,
    ),
    "clip": (lambda: CLIPVisionModel(CLIPVisionConfig(**COMMON, intermediate_size=64)), 1),
    "clip_projection": (
        lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**COMMON, intermediate_size=64, projection_dim=16)),
        1,
    ),
}


def make_family(name: str, **config_overrides):
    torch.manual_seed(0)
    return FAMILIES[name][0]().eval()


def randomize_adapters(model, seed: int = 0) -> None:
    """Give every trainable tensor random values, so tests see adapters that actually change the output (U = 0 at
    init would make every adapter check trivially pass)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
