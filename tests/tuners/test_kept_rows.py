"""A gated adapter computes only the samples its gate keeps (kept_rows.py), with the masked form's values, gradients
and random draws: forced gates, whole models under a seed, autocast, gradient checkpointing and several adapters."""

from __future__ import annotations

import math

import pytest
import torch
from peft import get_peft_model

import peft_puma
from peft_puma.tuners.puma import StochasticAdapter

from .tiny_models import HIDDEN, make_vit, randomize_adapters

SMALL = dict(r=8, num_prompts=5, prompt_length=3, embedding_size=16)
BATCH, TOKENS = 6, 7


def masked_add(adapter: StochasticAdapter, branch_output, branch_input, adapter_name):
    """The masked form the gathered one replaces: every sample's bottleneck, then multiplied by its gate."""
    return branch_output + adapter.adapter_output(branch_input, adapter_name).to(branch_output.dtype)


def training_adapter(keep_prob=0.5, train_scale=False) -> StochasticAdapter:
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL, keep_prob=keep_prob, train_scale=train_scale))
    randomize_adapters(model)
    return model.base_model.model.layers[0].mlp.train()


def forced_gate(adapter: StochasticAdapter, kept_rows, monkeypatch):
    gate = torch.zeros(BATCH, 1, 1)
    gate[list(kept_rows)] = 1 / adapter.keep_prob["default"]
    monkeypatch.setattr(adapter, "gate", lambda *args: gate.clone())


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("kept_rows", [(0, 3, 4), (5,), (), tuple(range(BATCH))])
@pytest.mark.parametrize("train_scale", [False, True])
def test_kept_rows_give_the_masked_forms_values_and_gradients(kept_rows, train_scale, monkeypatch):
    torch.manual_seed(1)
    adapter = training_adapter(keep_prob=0.4, train_scale=train_scale)
    forced_gate(adapter, kept_rows, monkeypatch)
    branch_output = torch.randn(BATCH, TOKENS, HIDDEN, requires_grad=True)
    branch_input = torch.randn(BATCH, TOKENS, HIDDEN, requires_grad=True)
    inputs = [branch_output, branch_input, *(p for p in adapter.parameters() if p.requires_grad)]
    weights = torch.randn(BATCH, TOKENS, HIDDEN)
    gathered = adapter.add_adapter_output(branch_output, branch_input, "default")
    masked = masked_add(adapter, branch_output, branch_input, "default")
    assert (gathered - masked).abs().max() <= 1e-6 * masked.abs().max()
    gathered_grads = torch.autograd.grad((gathered * weights).sum(), inputs, allow_unused=True)
    masked_grads = torch.autograd.grad((masked * weights).sum(), inputs)
    if not kept_rows:  # nothing kept: no gradient to the branch input (its own branch gives it one in a model)
        assert gathered_grads[1] is None
        gathered_grads = (gathered_grads[0], torch.zeros_like(branch_input), *gathered_grads[2:])
    for got, expected in zip(gathered_grads, masked_grads, strict=True):
        assert got is not None and got.shape == expected.shape  # the parameters' never None: optimiser and DDP
        if expected.abs().max() == 0:  # dropped everywhere: exact zeros
            assert got.abs().max() == 0
        else:
            assert relative_error(got, expected) <= 1e-5


def test_dropped_rows_are_not_computed(monkeypatch):
    """Backward keeps x (which the frozen branch keeps anyway) and the kept rows' ReLU output: no gathered copy of x
    and nothing of the dropped rows, so training needs less memory than the masked form, not more."""
    adapter = training_adapter()
    forced_gate(adapter, (1, 4), monkeypatch)
    branch_input = torch.randn(BATCH, TOKENS, HIDDEN)
    saved: dict[int, tuple[int, ...]] = {}

    def pack(tensor):
        saved[tensor.data_ptr()] = tuple(tensor.shape)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        adapter.add_adapter_output(torch.zeros(BATCH, TOKENS, HIDDEN), branch_input, "default").sum().backward()
    weights = {(HIDDEN, SMALL["r"]), (SMALL["r"], HIDDEN)}  # down and the scaled up: parameter-sized
    large = sorted(shape for shape in saved.values() if shape not in weights and math.prod(shape) >= TOKENS)
    assert large == sorted([(BATCH, TOKENS, HIDDEN), (2 * TOKENS, SMALL["r"])])


def test_a_draw_that_keeps_every_row_takes_the_single_addmm(monkeypatch):
    adapter = training_adapter()
    forced_gate(adapter, range(BATCH), monkeypatch)
    calls = []
    monkeypatch.setattr("peft_puma.tuners.puma.layer.add_on_kept_rows", lambda *args: calls.append(args))
    adapter.add_adapter_output(torch.zeros(BATCH, TOKENS, HIDDEN), torch.randn(BATCH, TOKENS, HIDDEN), "default")
    assert calls == []


def whole_model_step(model, pixels, seed):
    torch.manual_seed(seed)
    embeddings = model(pixel_values=pixels).embeddings
    loss = (embeddings * torch.linspace(-1, 1, embeddings.shape[-1])).sum()
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return embeddings.detach(), grads


def puma_in_training(**overrides):
    model = get_peft_model(make_vit(**overrides), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    return model.train()


@pytest.fixture
def pixels():
    return torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def test_a_seeded_training_step_draws_the_masked_forms_gates_in_the_same_order(pixels, monkeypatch):
    """Same seed, same gates: the whole model's embeddings and gradients equal the masked form's, so seeded runs,
    ``--resume`` and the equality to the original code are unchanged."""
    model = puma_in_training()
    gathered, gathered_grads = whole_model_step(model, pixels, seed=11)
    monkeypatch.setattr(StochasticAdapter, "add_adapter_output", masked_add)
    masked, masked_grads = whole_model_step(model, pixels, seed=11)
    torch.testing.assert_close(gathered, masked, rtol=1e-6, atol=1e-6)
    for got, expected in zip(gathered_grads, masked_grads, strict=True):
        assert relative_error(got, expected) <= 1e-5
    _, other_draw = whole_model_step(model, pixels, seed=12)
    assert any(relative_error(a, b) > 1e-3 for a, b in zip(other_draw, masked_grads))  # the gates do matter here


def test_gradient_checkpointing_recomputes_each_block_with_the_same_gates(pixels, monkeypatch):
    model = puma_in_training()
    draws = []
    original_gate = StochasticAdapter.gate
    monkeypatch.setattr(StochasticAdapter, "gate", lambda *args: draws.append(1) or original_gate(*args))
    plain_embeddings, plain_grads = whole_model_step(model, pixels, seed=5)
    plain_draws, draws[:] = len(draws), []
    vit = model.base_model.model
    # transformers 5.25 renamed gradient_checkpointing_enable (now deprecated) to activation_checkpointing_enable
    enable = getattr(vit, "activation_checkpointing_enable", None) or vit.gradient_checkpointing_enable
    enable()
    checkpointed_embeddings, checkpointed_grads = whole_model_step(model, pixels, seed=5)
    assert len(draws) == 2 * plain_draws  # every block ran twice: forward, and again in backward
    torch.testing.assert_close(checkpointed_embeddings, plain_embeddings)
    for got, expected in zip(checkpointed_grads, plain_grads, strict=True):
        assert relative_error(got, expected) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_the_gathered_form_runs_in_autocasts_dtype_and_matches_the_masked_form(dtype, monkeypatch):
    adapter = training_adapter()
    forced_gate(adapter, (0, 2, 5), monkeypatch)
    branch_input = torch.randn(BATCH, TOKENS, HIDDEN, requires_grad=True)
    parameters = [p for p in adapter.parameters() if p.requires_grad]
    results = []
    for add in (StochasticAdapter.add_adapter_output, masked_add):
        with torch.autocast("cpu", dtype=dtype):
            branch_output = (branch_input * 2).to(dtype)  # a low-precision branch output, as a frozen linear gives
            output = add(adapter, branch_output, branch_input, "default")
        assert output.dtype == dtype
        grads = torch.autograd.grad(output.float().square().sum(), [branch_input, *parameters])
        assert all(g.dtype == torch.float32 for g in grads)  # back in the parameters' and the input's dtype
        results.append((output.float(), grads))
    (gathered, gathered_grads), (masked, masked_grads) = results
    torch.testing.assert_close(gathered, masked, rtol=2e-2, atol=2e-2)
    for got, expected in zip(gathered_grads, masked_grads, strict=True):
        assert relative_error(got, expected) <= 3e-2


def test_each_of_several_adapters_computes_only_its_own_kept_rows(pixels):
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL))
    model.add_adapter("second", peft_puma.PUMAConfig(**SMALL, keep_prob=0.25))
    randomize_adapters(model)
    model.train()
    for name in ("default", "second"):
        model.set_adapter(name)
        _, grads = whole_model_step(model, pixels, seed=2)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(f".{name}" in n or n.endswith(name) for n in trainable)
        assert all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
