"""PUMA's forward equals docs/spec.md sections 2-4 computed by hand on the same weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peft import get_peft_model

import peft_puma
from peft_puma.tuners.puma import ConditionalPromptPool, EmbeddingHead, StochasticAdapter
from peft_puma.tuners.puma.prompt_pool import orthogonality

from .tiny_models import HIDDEN, LAYERS, NUM_PATCHES, PATCH, make_vit, randomize_adapters

SMALL = dict(r=8, num_prompts=5, prompt_length=3, embedding_size=16)


def puma_modules(model):
    vit = model.base_model.model
    pool = vit.embeddings
    head = vit.layernorm
    adapters = [(layer.attention, layer.mlp) for layer in vit.layers]
    assert isinstance(pool, ConditionalPromptPool) and isinstance(head, EmbeddingHead)
    return vit, pool, adapters, head


def hand_forward(model, pixels, gates=None, adapter="default"):
    """docs/spec.md sections 2-4, written out; ``gates[i]`` is the (B, 1, 1) g/p of adapter i in forward order."""
    vit, pool, adapters, head = puma_modules(model)
    embeddings = pool.base_layer
    projection = embeddings.patch_embeddings.projection
    patches = F.conv2d(pixels, projection.weight, projection.bias, stride=PATCH).flatten(2).transpose(1, 2)  # E
    query = (patches.mean(dim=1) + patches.max(dim=1).values) / 2
    keys, attention = pool.puma_keys[adapter], pool.puma_attention[adapter]
    prompts = pool.puma_prompts[adapter]
    weights = torch.stack(
        [
            F.cosine_similarity(query * attention[m].softmax(-1), keys[m].expand_as(query), dim=-1)
            for m in range(len(keys))
        ],
        dim=1,
    )
    prompt = sum(weights[:, m, None, None] * prompts[m] for m in range(len(prompts)))
    position = embeddings.position_embeddings[0]
    batch = pixels.shape[0]
    x = torch.cat(
        [
            embeddings.cls_token.expand(batch, -1, -1) + position[0],
            prompt + position[0],
            patches + position[1:],
        ],
        dim=1,
    )
    gate_iter = iter(gates) if gates is not None else None
    for layer, (attn_adapter, mlp_adapter) in zip(vit.layers, adapters):
        normed = layer.layernorm_before(x)
        g1 = next(gate_iter) if gate_iter else 1.0
        h = (
            x
            + attn_adapter.base_layer(normed)[0]
            + g1 * 0.1 * torch.relu(normed @ attn_adapter.puma_down[adapter]) @ attn_adapter.puma_up[adapter]
        )
        normed = layer.layernorm_after(h)
        g2 = next(gate_iter) if gate_iter else 1.0
        x = (
            h
            + mlp_adapter.base_layer(normed)
            + g2 * 0.1 * torch.relu(normed @ mlp_adapter.puma_down[adapter]) @ mlp_adapter.puma_up[adapter]
        )
    final = head.base_layer(x)
    linear = head.puma_projection[adapter]
    return F.normalize(final[:, 0] @ linear.weight.T + linear.bias, dim=-1), final


@pytest.fixture
def puma():
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    return model.eval()


def test_eval_forward_matches_hand_computation(puma, pixels):
    expected_embeddings, expected_tokens = hand_forward(puma, pixels)
    out = puma(pixel_values=pixels)
    torch.testing.assert_close(out.embeddings, expected_embeddings, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.last_hidden_state, expected_tokens, atol=1e-5, rtol=1e-5)


def test_training_gates_are_drawn_per_sample_per_adapter_and_scaled_by_keep_prob(puma, pixels):
    keep_prob = 0.5
    torch.manual_seed(123)
    gates = [torch.bernoulli(torch.full((pixels.shape[0], 1, 1), keep_prob)) / keep_prob for _ in range(2 * LAYERS)]
    expected, _ = hand_forward(puma, pixels, gates=gates)
    puma.train()
    torch.manual_seed(123)
    actual = puma(pixel_values=pixels).embeddings
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(actual, hand_forward(puma, pixels)[0], atol=1e-4), "gates had no effect"


def test_sequence_is_prefix_then_prompts_then_patches(puma, pixels):
    out = puma(pixel_values=pixels)
    assert out.last_hidden_state.shape == (pixels.shape[0], 1 + SMALL["prompt_length"] + NUM_PATCHES, HIDDEN)


def test_prompt_tokens_receive_the_cls_position_embedding(puma, pixels):
    _, pool, _, _ = puma_modules(puma)
    tokens = pool(pixels)
    position = pool.base_layer.position_embeddings[0, 0]
    prompts = pool.prompts_for(pool.base_layer.patch_embeddings(pixels), "default")
    torch.testing.assert_close(tokens[:, 1 : 1 + SMALL["prompt_length"]], prompts + position)
    cls = pool.base_layer.cls_token[0, 0] + position
    torch.testing.assert_close(tokens[:, 0], cls.expand(len(pixels), -1))


def test_prompt_query_is_detached_from_the_patch_projection(puma, pixels):
    _, pool, _, _ = puma_modules(puma)
    patches = pool.base_layer.patch_embeddings(pixels).detach().requires_grad_(True)
    assert not ConditionalPromptPool.query(patches).requires_grad


def test_prompt_weights_have_no_softmax_over_the_pool(puma, pixels):
    _, pool, _, _ = puma_modules(puma)
    weights = pool.prompt_weights(ConditionalPromptPool.query(pool.base_layer.patch_embeddings(pixels)), "default")
    assert weights.shape == (pixels.shape[0], SMALL["num_prompts"])
    assert not torch.allclose(weights.sum(dim=1), torch.ones(pixels.shape[0]))
    assert weights.abs().max() <= 1.0 + 1e-6


def test_single_prompt_is_the_same_for_every_image(pixels):
    overrides = {k: v for k, v in SMALL.items() if k != "num_prompts"}
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig.from_preset("single_prompt", **overrides)).eval()
    randomize_adapters(model)
    pool = model.base_model.model.embeddings
    assert "default" not in pool.puma_keys and "default" not in pool.puma_attention
    tokens = pool(pixels)
    expected = pool.puma_prompts["default"][0] + pool.base_layer.position_embeddings[0, 0]
    for image_tokens in tokens[:, 1 : 1 + SMALL["prompt_length"]]:
        torch.testing.assert_close(image_tokens, expected)


def test_regularization_loss_matches_hand_computation(puma):
    _, pool, _, _ = puma_modules(puma)
    keys, attention, prompts = (pool.puma_keys["default"], pool.puma_attention["default"], pool.puma_prompts["default"])

    def ortho(t):
        return ((t @ t.T - torch.eye(t.shape[0])) ** 2).mean()

    expected = 1e-6 * (ortho(keys) + ortho(attention) + ortho(prompts.reshape(prompts.shape[0], -1)))
    torch.testing.assert_close(puma.regularization_loss(), expected)
    assert puma.regularization_loss().requires_grad


def test_regularization_weight_scales_the_loss_and_zero_without_prompts():
    weighted = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL, regularization_weight=3.0))
    unweighted = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL))
    torch.testing.assert_close(weighted.regularization_loss(), 3.0 * unweighted.regularization_loss())
    no_prompts = get_peft_model(make_vit(), peft_puma.PUMAConfig.from_preset("static_adapter", **SMALL))
    assert no_prompts.regularization_loss().item() == 0.0


def test_orthogonality_is_zero_for_orthonormal_rows():
    assert orthogonality(torch.eye(4)[:3]).item() == 0.0
    assert orthogonality(2 * torch.eye(3)).item() == pytest.approx(9 * 3 / 9)


def test_adapter_is_identity_at_init(pixels):
    frozen = make_vit()
    expected = frozen(pixel_values=pixels).last_hidden_state
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig.from_preset("stochastic_adapter", **SMALL)).train()
    torch.testing.assert_close(model(pixel_values=pixels).last_hidden_state, expected)


def test_initialisation_follows_the_published_code():
    torch.manual_seed(0)
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL))
    vit, pool, adapters, _ = puma_modules(model)
    bound = math.sqrt(3 / SMALL["r"])
    for attn_adapter, mlp_adapter in adapters:
        down = attn_adapter.puma_down["default"]
        assert down.shape == (HIDDEN, SMALL["r"]) and down.abs().max() <= bound
        assert down.abs().max() > 0.8 * bound  # uniform over the whole range, not a narrower init
        torch.testing.assert_close(mlp_adapter.puma_down["default"], down)  # D1 and D2 start identical
        assert attn_adapter.puma_up["default"].abs().sum() == 0  # U = 0
    assert not torch.equal(adapters[0][0].puma_down["default"], adapters[1][0].puma_down["default"])
    prompts = pool.puma_prompts["default"]
    for slot in prompts:
        torch.testing.assert_close(slot, prompts[0])  # one component copied into every slot
    torch.testing.assert_close(prompts[0] @ prompts[0].T, torch.eye(SMALL["prompt_length"]), atol=1e-5, rtol=0)
    for name in ("puma_keys", "puma_attention"):
        rows = getattr(pool, name)["default"]
        torch.testing.assert_close(rows @ rows.T, torch.eye(SMALL["num_prompts"]), atol=1e-5, rtol=0)


def test_eval_gates_are_always_on(puma):
    adapter = puma.base_model.model.layers[0].attention
    assert isinstance(adapter, StochasticAdapter)
    assert adapter.gate(4, "default", torch.device("cpu")) == 1.0


def test_training_gates_are_zero_or_inverse_keep_prob_with_mean_one():
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL, keep_prob=0.25)).train()
    adapter = model.base_model.model.layers[0].mlp
    torch.manual_seed(0)
    gates = adapter.gate(20000, "default", torch.device("cpu"))
    assert gates.shape == (20000, 1, 1)
    assert set(gates.unique().tolist()) == {0.0, 4.0}
    assert gates.mean().item() == pytest.approx(1.0, abs=0.05)


def test_static_adapter_gate_is_one_in_training():
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig.from_preset("static_adapter", **SMALL)).train()
    assert model.base_model.model.layers[0].attention.gate(4, "default", torch.device("cpu")) == 1.0


def test_trainable_scale_is_a_parameter_per_branch(pixels):
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL, train_scale=True, scale=0.3))
    adapter = model.base_model.model.layers[1].mlp
    assert adapter.puma_scale["default"].requires_grad and adapter.puma_scale["default"].item() == pytest.approx(0.3)
    randomize_adapters(model)
    model(pixel_values=pixels).embeddings.sum().backward()
    assert adapter.puma_scale["default"].grad is not None


def test_head_is_linear_on_the_final_cls_token_then_l2_normalised(puma, pixels):
    out = puma(pixel_values=pixels)
    head = puma.base_model.model.layernorm
    linear = head.puma_projection["default"]
    expected = F.normalize(linear(out.last_hidden_state[:, 0]), dim=-1)
    torch.testing.assert_close(out.embeddings, expected)
    torch.testing.assert_close(out.embeddings.norm(dim=-1), torch.ones(pixels.shape[0]))


def test_adapters_on_a_subset_of_layers():
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL, layers=[1]))
    vit = model.base_model.model
    assert not isinstance(vit.layers[0].attention, StochasticAdapter)
    assert isinstance(vit.layers[1].attention, StochasticAdapter) and isinstance(vit.layers[1].mlp, StochasticAdapter)


@pytest.mark.parametrize("train_scale", [False, True])
def test_adapter_keeps_only_its_input_and_bottleneck_for_backward(train_scale):
    """Training memory: of the activations, an adapter that keeps every row saves for backward only x (B, T, d) and
    relu(x @ down) (B, T, r), whether or not its scale is trained: no scaled copy of the token sequence. (A gated one
    keeps only its kept rows' ReLU output: test_kept_rows.py.)"""
    config = peft_puma.PUMAConfig(**SMALL, train_scale=train_scale, keep_prob=1.0)
    model = get_peft_model(make_vit(), config).train()
    adapter = model.base_model.model.layers[0].mlp
    branch_input = torch.randn(4, 7, HIDDEN)
    saved: dict[int, tuple[int, ...]] = {}

    def pack(tensor):
        saved[tensor.data_ptr()] = tuple(tensor.shape)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        adapter.add_adapter_output(torch.zeros(4, 7, HIDDEN), branch_input, "default").sum().backward()
    tokens = 4 * 7  # matmuls may save a (B * T, n) view of a (B, T, n) tensor
    activations = sorted(math.prod(shape) // tokens for shape in saved.values() if math.prod(shape) % tokens == 0)
    assert activations == [SMALL["r"], HIDDEN]


@pytest.mark.parametrize(("keep_prob", "training"), [(0.5, False), (1.0, True), (1.0, False)])
def test_fused_add_equals_branch_output_plus_adapter_output(keep_prob, training):
    """Without a gate (eval, p = 1) the adapter adds its up projection onto the branch output in one addmm: same values
    and same gradients as adding its output."""
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL, keep_prob=keep_prob, train_scale=True))
    randomize_adapters(model)
    adapter = model.base_model.model.layers[0].mlp.train(training)
    branch_output = torch.randn(4, 7, HIDDEN, requires_grad=True)
    branch_input = torch.randn(4, 7, HIDDEN, requires_grad=True)
    fused = adapter.add_adapter_output(branch_output, branch_input, "default")
    plain = branch_output + adapter.adapter_output(branch_input, "default")
    torch.testing.assert_close(fused, plain)
    weights = torch.randn_like(fused)
    inputs = [branch_output, branch_input, *(p for p in adapter.parameters() if p.requires_grad)]
    fused_grads = torch.autograd.grad((fused * weights).sum(), inputs)
    plain_grads = torch.autograd.grad((plain * weights).sum(), inputs)
    for got, expected in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_fused_add_never_pairs_rows_of_differently_laid_out_tensors():
    """A branch output whose leading dimensions differ from the input's (e.g. sequence-first) must not be silently
    reshaped into the adapter's rows: it fails as the plain sum would."""
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL)).eval()
    adapter = model.base_model.model.layers[0].mlp
    with pytest.raises(RuntimeError):
        adapter.add_adapter_output(torch.randn(7, 4, HIDDEN), torch.randn(4, 7, HIDDEN), "default")
