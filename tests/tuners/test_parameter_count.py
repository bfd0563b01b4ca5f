"""The published trainable-parameter count on ViT-S/16 (docs/spec.md section 4), and what each variant trains."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import ViTConfig, ViTModel

import peft_puma


@pytest.fixture(scope="module")
def vit_s16_config() -> ViTConfig:
    return ViTConfig(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
        patch_size=16,
        image_size=224,
        qkv_bias=True,
        layer_norm_eps=1e-6,
    )


ADAPTERS, PROMPT_POOL, HEAD = 2_359_296, 76_800, 49_280


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("puma", ADAPTERS + PROMPT_POOL + HEAD),  # 2,485,376: the paper's "2.49M"
        ("static_adapter", ADAPTERS + HEAD),
        ("conditional_prompt", PROMPT_POOL + HEAD),
        ("single_prompt", 8 * 384 + HEAD),
        ("linear", HEAD),
    ],
)
def test_vit_s16_trainable_parameters_are_exact(vit_s16_config, preset, expected):
    torch.manual_seed(0)
    model = get_peft_model(ViTModel(vit_s16_config, add_pooling_layer=False), peft_puma.PUMAConfig.from_preset(preset))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected
    groups = model.parameter_groups()
    assert sum(p.numel() for group in groups.values() for p in group) == expected
    assert sum(p.numel() for p in groups["head"]) == HEAD


def test_puma_default_is_2485376_and_the_backbone_is_frozen(vit_s16_config):
    backbone = ViTModel(vit_s16_config, add_pooling_layer=False)
    backbone_params = {id(p) for p in backbone.parameters()}
    model = get_peft_model(backbone, peft_puma.PUMAConfig())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2_485_376
    assert not any(p.requires_grad for p in model.parameters() if id(p) in backbone_params)
