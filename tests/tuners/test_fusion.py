"""The fused eval path (docs/fusion.md): the same embeddings as the eval-mode PUMA model, with every adapter folded into
the frozen linears beside it, for every backbone family; an eval-only model that refuses training and saving."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model, inject_adapter_in_model
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import peft_puma
from peft_puma.runs.saving import puma_over_lora
from peft_puma.tuners.puma import FusedAttention, FusedMLP, FusedPUMAModel, StochasticAdapter, fuse_for_inference

from .tiny_models import FAMILIES, make_family, randomize_adapters

LAYERS = 3
# Trained-looking: random (non-zero) adapters, prompts and head; stochastic gates in training.
SMALL = dict(r=8, num_prompts=5, prompt_length=3, embedding_size=16, keep_prob=0.5)
TOLERANCE = dict(atol=1e-5, rtol=0)


def trained_puma(family: str = "vit", seed: int = 0, backbone_overrides: dict | None = None, **config) -> nn.Module:
    """A PUMA model of ``family`` with random adapters, in eval mode. The backbone's biases (zero at initialisation)
    and LayerScale vectors (one) get random values too, so that carrying them into the fused linears is tested."""
    backbone = make_family(family, num_hidden_layers=LAYERS, **(backbone_overrides or {}))
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, parameter in backbone.named_parameters():
            if name.endswith(("bias", "lambda1")):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.5)
    model = get_peft_model(backbone, peft_puma.PUMAConfig(**{**SMALL, **config}))
    randomize_adapters(model, seed)
    return model.eval()


def outputs(model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings, and the backbone's own output: its final tokens, or a classifier's logits."""
    with torch.no_grad():
        out = model(pixel_values=pixels)
    backbone = out.backbone_output
    return out.embeddings, backbone.logits if "logits" in backbone else backbone.last_hidden_state


def assert_same_outputs(fused: nn.Module, model: nn.Module, pixels: torch.Tensor) -> None:
    for got, expected in zip(outputs(fused, pixels), outputs(model, pixels), strict=True):
        torch.testing.assert_close(got, expected, **TOLERANCE)


def fused_branches(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (FusedAttention, FusedMLP))]


def adapters_left(model: nn.Module) -> list[StochasticAdapter]:
    return [m for m in model.modules() if isinstance(m, StochasticAdapter)]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fused_model_gives_the_eval_embeddings_of_every_family(family, pixels):
    model = trained_puma(family)
    fused = fuse_for_inference(model)
    assert_same_outputs(fused, model, pixels)
    assert fused.unfused_sites == () and not adapters_left(fused)
    assert len(fused_branches(fused)) == 2 * LAYERS  # every adapter folded, none left computing on the side
    hooked = [name for name, m in fused.named_modules() if isinstance(m, nn.LayerNorm) and m._forward_hooks]
    assert not hooked, f"LayerNorms still feeding removed adapters: {hooked}"


def test_dinov2_layer_scale_is_folded_into_the_output_projections(pixels):
    """DINOv2 adds the adapter after LayerScale: the fused output projection carries lambda, LayerScale is gone."""
    model = trained_puma("dinov2")
    fused = fuse_for_inference(model)
    block = fused.model.encoder.layer[0]
    frozen_block = model.get_base_model().encoder.layer[0]
    assert isinstance(block.layer_scale1, nn.Identity) and isinstance(block.layer_scale2, nn.Identity)
    lambda1 = frozen_block.layer_scale1.base_layer.lambda1
    expected = frozen_block.attention.o_proj.weight * lambda1[:, None]
    torch.testing.assert_close(block.attention.output_projection.weight, expected)
    assert_same_outputs(fused, model, pixels)


def test_swiglu_mlp_keeps_its_adapter_unfused_and_exact(pixels):
    model = trained_puma("dinov2", backbone_overrides=dict(use_swiglu_ffn=True))
    fused = fuse_for_inference(model)
    assert fused.unfused_sites == tuple(f"layers.{i}.mlp" for i in range(LAYERS))
    assert sum(isinstance(m, FusedAttention) for m in fused.modules()) == LAYERS
    assert len(adapters_left(fused)) == LAYERS
    assert_same_outputs(fused, model, pixels)


def _addmm_in_place_flops(bias_shape, first_shape, second_shape, out_shape=None, **kwargs) -> int:
    return 2 * first_shape[0] * first_shape[1] * second_shape[1]  # FlopCounterMode counts addmm, not addmm_


def test_a_projection_wrapped_by_another_method_keeps_its_adapter_unfused(pixels):
    """LoRA on the query projections (as the LoRA baseline injects it): those attention branches are not plain linears,
    so their PUMA adapters stay unfused, and the model stays exact."""
    backbone = make_family("vit", num_hidden_layers=LAYERS)
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False), backbone)
    with puma_over_lora():
        model = get_peft_model(backbone, peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    model.eval()
    fused = fuse_for_inference(model)
    assert fused.unfused_sites == tuple(f"layers.{i}.attention" for i in range(LAYERS))
    assert sum(isinstance(m, FusedMLP) for m in fused.modules()) == LAYERS
    assert_same_outputs(fused, model, pixels)


def test_disabled_adapters_fuse_to_the_zero_shot_model(pixels):
    model = trained_puma()
    with model.disable_adapter():
        expected = outputs(model, pixels)
        fused = fuse_for_inference(model)
    assert not fused_branches(fused) and not adapters_left(fused)
    for got, want in zip(outputs(fused, pixels), expected, strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE)


def test_fused_model_returns_a_tuple_without_return_dict(pixels):
    model = trained_puma()
    fused = fuse_for_inference(model)
    with torch.no_grad():
        got, want = fused(pixel_values=pixels, return_dict=False), model(pixel_values=pixels, return_dict=False)
    assert isinstance(got, tuple) and len(got) == len(want)
    torch.testing.assert_close(got[0], want[0], **TOLERANCE)


def test_fused_model_runs_the_same_flops_as_the_unfused_one(pixels):
    """Fusing joins products, it adds no arithmetic: FLOPs per forward are those of the adapted model."""
    model = trained_puma()
    fused = fuse_for_inference(model)
    counts = []
    for candidate in (model, fused):
        mapping = {torch.ops.aten.addmm_: _addmm_in_place_flops}
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            candidate(pixel_values=pixels)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_adapters_on_some_layers_fuse_those_layers_only(pixels):
    model = trained_puma(layers=[1])
    fused = fuse_for_inference(model)
    layers = fused.model.layers
    assert isinstance(layers[1].attention, FusedAttention) and isinstance(layers[1].mlp, FusedMLP)
    assert type(layers[0].attention).__name__ == "ViTAttention" and type(layers[2].mlp).__name__ == "ViTMLP"
    assert fused.unfused_sites == ()
    assert_same_outputs(fused, model, pixels)


@pytest.mark.parametrize("preset", ["conditional_prompt", "stochastic_adapter", "single_prompt_static_adapter"])
def test_variants_without_adapters_or_prompts_fuse_exactly(preset, pixels):
    options = {k: v for k, v in SMALL.items() if k not in ("num_prompts", "keep_prob")}
    backbone = make_family("vit", num_hidden_layers=LAYERS)
    model = get_peft_model(backbone, peft_puma.PUMAConfig.from_preset(preset, **options))
    randomize_adapters(model)
    model.eval()
    fused = fuse_for_inference(model)
    assert len(fused_branches(fused)) == (0 if preset == "conditional_prompt" else 2 * LAYERS)
    assert_same_outputs(fused, model, pixels)


def test_trained_scale_is_folded_into_the_up_projection(pixels):
    model = trained_puma(train_scale=True, scale=0.3)
    with torch.no_grad():
        for module in adapters_left(model):
            module.puma_scale["default"].fill_(0.7)  # a learnt value, not the initial one
    fused = fuse_for_inference(model)
    adapter = model.get_base_model().layers[1].mlp
    torch.testing.assert_close(fused.model.layers[1].mlp.up, 0.7 * adapter.puma_up["default"])
    assert_same_outputs(fused, model, pixels)


def test_eager_attention_backbone_fuses_to_the_same_values(pixels):
    model = trained_puma(backbone_overrides=dict(attn_implementation="eager"))
    assert model.get_base_model().config._attn_implementation == "eager"
    assert_same_outputs(fuse_for_inference(model), model, pixels)


def test_the_active_adapter_is_fused_and_the_fused_model_carries_only_it(pixels):
    model = trained_puma()
    model.add_adapter("other", peft_puma.PUMAConfig(**{**SMALL, "r": 4, "layers": [0, 2]}))
    model.set_adapter("other")
    randomize_adapters(model, seed=6)  # the trainable tensors: the active adapter's
    model.eval()
    fused_other = fuse_for_inference(model)
    assert fused_other.active_adapter == "other" and fused_other.peft_config["other"].r == 4
    assert_same_outputs(fused_other, model, pixels)
    pools = [m for m in fused_other.modules() if isinstance(m, peft_puma.tuners.puma.ConditionalPromptPool)]
    assert [set(pool.puma_prompts) for pool in pools] == [{"other"}]
    layers = fused_other.model.layers
    assert isinstance(layers[0].attention, FusedAttention) and isinstance(layers[2].mlp, FusedMLP)
    assert type(layers[1].attention).__name__ == "ViTAttention" and not adapters_left(fused_other)
    model.set_adapter("default")
    model.eval()
    fused_default = fuse_for_inference(model)
    assert_same_outputs(fused_default, model, pixels)
    assert not torch.allclose(outputs(fused_default, pixels)[0], outputs(fused_other, pixels)[0], atol=1e-3)


def test_fusing_leaves_the_given_model_unchanged_and_independent(pixels):
    model = trained_puma()
    before = outputs(model, pixels)
    fused = model.fuse_for_inference()  # the PeftModel's own method (through its PUMA tuner)
    assert isinstance(fused, FusedPUMAModel)
    for got, expected in zip(outputs(model, pixels), before, strict=True):
        torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert len(adapters_left(model)) == 2 * LAYERS
    with torch.no_grad():  # training the source further
        up = model.get_base_model().layers[0].mlp.puma_up["default"]
        up.add_(torch.randn(up.shape, generator=torch.Generator().manual_seed(3)))
    assert not torch.allclose(outputs(model, pixels)[0], before[0], atol=1e-3)
    torch.testing.assert_close(outputs(fused, pixels)[0], before[0], **TOLERANCE)


def test_fusing_a_model_in_training_mode_gives_the_eval_function_and_keeps_its_mode(pixels):
    model = trained_puma()
    expected = outputs(model, pixels)
    model.train()
    fused = fuse_for_inference(model)
    assert model.training and not fused.training
    torch.testing.assert_close(outputs(fused, pixels)[0], expected[0], **TOLERANCE)


def test_training_a_fused_model_is_refused(pixels):
    fused = fuse_for_inference(trained_puma())
    with pytest.raises(peft_puma.FusedModelError, match="cannot be trained.*Train the PeftModel"):
        fused.train()
    with pytest.raises(peft_puma.FusedModelError):
        fused.model.layers[0].attention.train()
    assert fused.eval() is fused and fused.train(False) is fused and not fused.training
    assert not any(p.requires_grad for p in fused.parameters())  # nothing an optimiser could update
    pixels = pixels.clone().requires_grad_(True)
    fused(pixel_values=pixels).embeddings.sum().backward()  # gradients reach the input, e.g. for attribution
    assert pixels.grad is not None and all(p.grad is None for p in fused.parameters())


def test_a_fused_models_tensors_cannot_be_made_trainable(pixels):
    """requires_grad_(True) is refused; a tensor made trainable by hand is refused at the first forward with
    gradients, before any gradient an optimiser could apply exists (a forward under no_grad stays allowed)."""
    fused = fuse_for_inference(trained_puma())
    with pytest.raises(peft_puma.FusedModelError, match="cannot be trained"):
        fused.requires_grad_(True)
    with pytest.raises(peft_puma.FusedModelError, match="cannot be trained"):
        fused.model.layers[0].attention.requires_grad_()
    assert fused.requires_grad_(False) is fused and not any(p.requires_grad for p in fused.parameters())
    weight = next(fused.parameters())
    weight.requires_grad = True
    with pytest.raises(peft_puma.FusedModelError, match="cannot be trained"):
        fused(pixel_values=pixels)
    assert all(p.grad is None for p in fused.parameters())
    with torch.no_grad():
        fused(pixel_values=pixels)


def test_saving_a_fused_model_as_an_adapter_is_refused(tmp_path):
    fused = fuse_for_inference(trained_puma())
    for save in (fused.save_pretrained, fused.push_to_hub):
        with pytest.raises(peft_puma.FusedModelError, match="not an adapter.*model.save_pretrained"):
            save(str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_only_puma_models_can_be_fused():
    with pytest.raises(peft_puma.InvalidConfigError, match="takes a PUMA model"):
        fuse_for_inference(make_family("vit"))


def test_bfloat16_fused_model_stays_within_bfloat16_rounding(pixels):
    model = trained_puma().to(torch.bfloat16)
    fused = fuse_for_inference(model)
    pixels = pixels.to(torch.bfloat16)
    reference = outputs(trained_puma(), pixels.float())[0]
    fused_error = (outputs(fused, pixels)[0] - reference).abs().max()
    unfused_error = (outputs(model, pixels)[0].float() - reference).abs().max()
    assert fused_error < 5e-2 and fused_error < 3 * unfused_error + 1e-2  # bf16 keeps 8 bits of mantissa


def test_fused_model_compiles_to_one_graph_with_eager_results(pixels):
    fused = fuse_for_inference(trained_puma())
    torch._dynamo.reset()
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(pixel_values=pixels).embeddings, fused(pixel_values=pixels).embeddings)
