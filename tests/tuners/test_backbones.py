"""Every supported backbone family: layout, frozen backbone, attention implementations, checkpointing, bf16."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

import peft_puma
from peft_puma.training.methods import enable_activation_checkpointing
from peft_puma.tuners.puma import ConditionalPromptPool, EmbeddingHead, StochasticAdapter

from .tiny_models import FAMILIES, HIDDEN, LAYERS, NUM_PATCHES, make_family, randomize_adapters

SMALL = dict(r=8, num_prompts=4, prompt_length=3, embedding_size=16)
EXPECTED_TRAINABLE = 2 * LAYERS * 2 * HIDDEN * 8 + (4 * 3 * HIDDEN + 2 * 4 * HIDDEN) + (HIDDEN * 16 + 16)


def puma_on(family: str, **overrides):
    model = get_peft_model(make_family(family), peft_puma.PUMAConfig(**{**SMALL, **overrides}))
    randomize_adapters(model)
    return model.eval()


def final_tokens(model, pixels) -> torch.Tensor:
    """The token sequence leaving the last block, for every family (classifiers have no last_hidden_state)."""
    return model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_gets_every_puma_part_and_only_those_train(family, pixels):
    model = puma_on(family)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(StochasticAdapter) == 2 * LAYERS
    assert kinds.count(ConditionalPromptPool) == 1 and kinds.count(EmbeddingHead) == 1
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == EXPECTED_TRAINABLE
    assert all("puma_" in name for name in trainable)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_prompts_follow_the_prefix_tokens(family, pixels):
    model = puma_on(family)
    prefix = FAMILIES[family][1]
    out = model(pixel_values=pixels)
    assert out.embeddings.shape == (len(pixels), 16)
    torch.testing.assert_close(out.embeddings.norm(dim=-1), torch.ones(len(pixels)))
    assert final_tokens(model, pixels).shape[1] == prefix + SMALL["prompt_length"] + NUM_PATCHES
    # The frozen model's prefix-token count is what the family table claims.
    with model.disable_adapter():
        assert final_tokens(model, pixels).shape[1] == prefix + NUM_PATCHES


@pytest.mark.parametrize("family", list(FAMILIES))
def test_disabled_adapter_gives_exactly_the_frozen_model(family, pixels):
    frozen = make_family(family)
    expected = frozen(pixel_values=pixels)
    model = puma_on(family)
    with model.disable_adapter():
        out = model(pixel_values=pixels)
    compared = 0
    for name in ("last_hidden_state", "logits", "pooler_output", "image_embeds"):
        if getattr(expected, name, None) is not None:
            torch.testing.assert_close(getattr(out, name), getattr(expected, name))
            compared += 1
    assert compared >= 1


@pytest.mark.parametrize("family", ["vit", "deit", "dinov2_registers", "clip"])
def test_eager_and_sdpa_attention_agree(family, pixels):
    model = puma_on(family)
    backbone = model.base_model.model
    backbone.set_attn_implementation("eager")
    eager = model(pixel_values=pixels).embeddings
    backbone.set_attn_implementation("sdpa")
    sdpa = model(pixel_values=pixels).embeddings
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-4)


def _gradients(model, pixels, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = model(pixel_values=pixels).embeddings.pow(3).sum() + model.regularization_loss()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", ["vit", "dinov2", "clip"])
def test_gradient_checkpointing_gives_the_same_gradients(family, pixels):
    model = puma_on(family).train()
    reference = _gradients(model, pixels)
    enable_activation_checkpointing(model)
    adapter = next(m for m in model.modules() if isinstance(m, StochasticAdapter))
    calls = []
    adapter.register_forward_hook(lambda *args: calls.append(1))
    checkpointed = _gradients(model, pixels)
    assert len(calls) == 2, "the block was not recomputed in backward: checkpointing is not active"
    assert reference.keys() == checkpointed.keys()
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], atol=1e-6, rtol=1e-5, msg=name)
    assert any(g.abs().sum() > 0 for n, g in reference.items() if "puma_up" in n)


@pytest.mark.parametrize("family", ["vit", "dinov2", "clip"])
def test_bf16_autocast_runs_and_stays_close_to_fp32(family, pixels):
    model = puma_on(family)
    full = model(pixel_values=pixels).embeddings
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(pixel_values=pixels).embeddings
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert torch.nn.functional.cosine_similarity(full, half).min() > 0.98


def test_bf16_autocast_training_step_gives_finite_fp32_gradients(pixels):
    model = puma_on("vit").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(pixel_values=pixels).embeddings.sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_half_precision_backbone_keeps_fp32_adapters(pixels):
    backbone = make_family("vit").to(torch.bfloat16)
    model = get_peft_model(backbone, peft_puma.PUMAConfig(**SMALL)).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    out = model(pixel_values=pixels.to(torch.bfloat16))
    assert out.embeddings.dtype == torch.float32 and torch.isfinite(out.embeddings).all()
