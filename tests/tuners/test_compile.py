"""PUMA under ``torch.compile``: the whole model is one graph (no graph break from the LayerNorm hooks that feed the
adapters, the per-sample gates or the prompt insertion) and computes exactly what eager mode computes.

The ``aot_eager`` backend traces forward and backward like inductor does but runs the traced ATen ops as they are, so
it needs no C++ compiler and draws the gates from the same random stream as eager mode; inductor's own speed is
measured by ``benchmarks/cost.py --compile-methods`` (docs/benchmarks.md).
"""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

import peft_puma

from .tiny_models import FAMILIES, make_family, make_vit, randomize_adapters

SMALL = dict(r=8, num_prompts=5, prompt_length=3, embedding_size=16)


@pytest.fixture
def puma():
    torch.manual_seed(0)
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    return model


def _compiled(model):
    torch._dynamo.reset()
    return torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: any graph break raises


@pytest.mark.parametrize("family", list(FAMILIES))
def test_eval_forward_compiles_to_one_graph_with_eager_results(family, pixels):
    model = get_peft_model(make_family(family), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    model.eval()
    with torch.inference_mode():
        expected = model(pixel_values=pixels).embeddings
        actual = _compiled(model)(pixel_values=pixels).embeddings
    torch.testing.assert_close(actual, expected)


def test_training_step_compiles_to_one_graph_with_eager_gates_and_gradients(puma, pixels):
    puma.train()
    trainable = [p for p in puma.parameters() if p.requires_grad]

    def step(model):
        torch.manual_seed(7)  # the same gates in both runs
        embeddings = model(pixel_values=pixels).embeddings
        return embeddings.detach(), torch.autograd.grad(embeddings[:, 0].sum(), trainable)

    expected, expected_grads = step(puma)
    actual, actual_grads = step(_compiled(puma))
    torch.testing.assert_close(actual, expected)
    for got, want in zip(actual_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)
    assert any(g.abs().sum() > 0 for g in actual_grads)
