"""The prompt pool's per-image weights, as a public API: what the forward pass mixes the prompts with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft import get_peft_model

import peft_puma

from .tiny_models import FAMILIES, make_family, randomize_adapters

SMALL = {"r": 4, "num_prompts": 5, "prompt_length": 2, "embedding_size": 8}


@pytest.mark.parametrize("family", ["vit", "deit", "dinov2_registers", "clip"])
def test_prompt_weights_are_the_cosines_the_forward_pass_mixes_prompts_with(family, pixels):
    model = get_peft_model(make_family(family), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    model.eval()
    pool = next(m for m in model.modules() if isinstance(m, peft_puma.tuners.puma.ConditionalPromptPool))
    recorded = []
    handle = pool.register_forward_hook(lambda module, args, output: recorded.append(output))
    model(pixel_values=pixels)
    handle.remove()
    weights = model.prompt_weights(pixels)
    assert weights.shape == (pixels.shape[0], SMALL["num_prompts"])
    prompts = torch.einsum("bm,mld->bld", weights, pool.puma_prompts["default"]) + pool.cls_position()
    prefix = FAMILIES[family][1]
    torch.testing.assert_close(recorded[0][:, prefix : prefix + SMALL["prompt_length"]], prompts)
    assert not torch.allclose(weights[0], weights[1])  # conditioned on the image


def test_prompt_weights_need_a_conditional_pool(pixels):
    options = {key: value for key, value in SMALL.items() if key != "num_prompts"}
    model = get_peft_model(make_family("vit"), peft_puma.PUMAConfig.from_preset("single_prompt", **options))
    with pytest.raises(peft_puma.InvalidConfigError, match="no conditional prompt pool"):
        model.prompt_weights(pixels)


def test_prompt_weights_equal_a_hand_computation_from_the_patch_projection(pixels):
    model = get_peft_model(make_family("vit"), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    pool = next(m for m in model.modules() if isinstance(m, peft_puma.tuners.puma.ConditionalPromptPool))
    patches = model.get_base_model().embeddings.patch_embeddings.projection(pixels).flatten(2).transpose(1, 2)
    query = (patches.mean(dim=1) + patches.amax(dim=1)) / 2
    keys, attention = pool.puma_keys["default"], pool.puma_attention["default"]
    expected = torch.stack(
        [F.cosine_similarity(query * attention[m].softmax(dim=-1), keys[m].unsqueeze(0), dim=-1) for m in range(5)],
        dim=1,
    )
    torch.testing.assert_close(model.prompt_weights(pixels), expected)
