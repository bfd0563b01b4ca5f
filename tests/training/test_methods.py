"""The methods table: PUMA presets and the paper's baselines build, train the right tensors, save and reload."""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import pytest
import torch
from transformers import ViTConfig, ViTModel
from transformers.modeling_layers import GradientCheckpointingLayer

from peft_puma.backbones.loading import load_backbone
from peft_puma.errors import InvalidConfigError
from peft_puma.runs.saving import load_trained, save_trained
from peft_puma.training.methods import (
    METHODS,
    MethodOptions,
    build_model,
    compile_for_training,
    enable_activation_checkpointing,
    lora_rank_for_budget,
    parameter_groups,
)
from peft_puma.tuners.puma.config import PUMA_PRESETS, PUMAConfig

SMALL_PUMA = {"r": 8, "num_prompts": 4, "prompt_length": 2, "embedding_size": 16}


def small(method: str, **lora) -> MethodOptions:
    """The method's options on a small PUMA: its preset with the small sizes it leaves free."""
    preset = METHODS[method].preset
    entries = {key: value for key, value in SMALL_PUMA.items() if key not in PUMA_PRESETS[preset]}
    return MethodOptions(puma=PUMAConfig.from_preset(preset, **entries), **lora)


EXPECTED_GROUPS = {
    "puma": {"adapters", "prompts", "head"},
    "stochastic_adapter": {"adapters", "head"},
    "static_adapter": {"adapters", "head"},
    "conditional_prompt": {"prompts", "head"},
    "single_prompt": {"prompts", "head"},
    "single_prompt_static_adapter": {"adapters", "prompts", "head"},
    "linear": {"head"},
    "lora": {"lora", "head"},
    "full_finetune": {"backbone", "head"},
}


def test_every_method_of_the_paper_is_in_the_table():
    assert set(METHODS) == set(EXPECTED_GROUPS)


@pytest.mark.parametrize("method", sorted(EXPECTED_GROUPS))
def test_each_method_trains_exactly_its_own_tensors(method, tiny_assets):
    backbone, _ = load_backbone(tiny_assets["backbone"])
    model = build_model(method, backbone, small(method))
    groups = parameter_groups(model)
    assert set(groups) == EXPECTED_GROUPS[method]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for params in groups.values() for p in params}
    if method == "static_adapter":
        assert model.peft_config["default"].keep_prob == 1.0
    if method == "single_prompt":
        assert model.peft_config["default"].num_prompts == 1


def test_a_puma_config_that_is_not_the_methods_preset_is_refused(tiny_assets):
    backbone, _ = load_backbone(tiny_assets["backbone"])
    with pytest.raises(InvalidConfigError, match="'static_adapter' is not its preset's: {'keep_prob': \\(1.0, 0.5\\)}"):
        build_model("static_adapter", backbone, MethodOptions(puma=PUMAConfig(use_prompts=False, r=8)))


def test_lora_rank_gives_a_budget_like_pumas_on_vit_s():
    """ViT-S/16: PUMA's adapters + prompt pool are 2,436,096 tensors; LoRA at the chosen rank is within 2 % of it."""
    torch.manual_seed(0)
    vit_s = ViTModel(
        ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
        add_pooling_layer=False,
    )
    rank = lora_rank_for_budget(vit_s, MethodOptions(puma=PUMAConfig.from_preset("linear")))
    model = build_model("lora", vit_s, MethodOptions(puma=PUMAConfig.from_preset("linear"), lora_r=rank))
    lora = sum(p.numel() for p in parameter_groups(model)["lora"])
    assert rank == 29 and abs(lora - 2_436_096) / 2_436_096 < 0.02


def _randomise(model) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)


@pytest.mark.parametrize(("method", "extra_folder"), [("lora", "lora"), ("full_finetune", "backbone"), ("puma", None)])
def test_saved_methods_reload_with_the_same_embeddings(method, extra_folder, tiny_assets, tmp_path):
    backbone, _ = load_backbone(tiny_assets["backbone"])
    model = build_model(method, backbone, small(method))
    _randomise(model)
    save_trained(model, str(tmp_path))
    for folder in ("lora", "backbone"):
        assert os.path.isdir(tmp_path / folder) == (folder == extra_folder)
    fresh, _ = load_backbone(tiny_assets["backbone"])
    reloaded = load_trained(fresh, str(tmp_path))
    pixels = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(pixel_values=pixels).embeddings, model.eval()(pixel_values=pixels).embeddings
        )


def test_lora_baseline_builds_and_reloads_without_peft_warnings(tiny_assets, tmp_path):
    """PUMA's head on a LoRA-injected backbone is layered on purpose; PEFT's "second time" and "already found a
    peft_config" warnings would tell a user running the baseline that something is wrong when nothing is."""
    backbone, _ = load_backbone(tiny_assets["backbone"])
    backbone.name_or_path = "someone/a-vit-on-the-hub"  # saving must not ask the Hub about its vocabulary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_model("lora", backbone, small("lora"))
        save_trained(model, str(tmp_path))
        fresh, _ = load_backbone(tiny_assets["backbone"])
        load_trained(fresh, str(tmp_path))


def _gradients(model, pixels) -> dict[str, torch.Tensor]:
    model.train().zero_grad()
    torch.manual_seed(3)  # the same Bernoulli gates in both runs
    model(pixel_values=pixels).embeddings.pow(3).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def _checkpointing_on(model) -> bool:
    backbone = model.get_base_model()
    if hasattr(type(backbone), "is_activation_checkpointing"):  # transformers 5.23 and later
        return backbone.is_activation_checkpointing
    return backbone.is_gradient_checkpointing


@pytest.mark.parametrize("method", ["puma", "lora", "full_finetune"])
def test_activation_checkpointing_recomputes_blocks_with_the_same_gradients(method, tiny_assets):
    pixels = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    plain = build_model(method, load_backbone(tiny_assets["backbone"])[0], small(method))
    checkpointed = build_model(
        method, load_backbone(tiny_assets["backbone"])[0], small(method), activation_checkpointing=True
    )
    checkpointed.load_state_dict(plain.state_dict())
    assert _checkpointing_on(checkpointed) and not _checkpointing_on(plain)
    # transformers checkpoints the block's forward, not its __call__: a hook on a module inside it sees the recompute.
    block = next(m for m in checkpointed.modules() if isinstance(m, GradientCheckpointingLayer))
    first_norm = next(m for m in block.modules() if isinstance(m, torch.nn.LayerNorm))
    calls = []
    first_norm.register_forward_pre_hook(lambda *args: calls.append(1))
    reference, recomputed = _gradients(plain, pixels), _gradients(checkpointed, pixels)
    assert len(calls) == 2, "the block ran once: it was not recomputed in backward"
    assert reference.keys() == recomputed.keys()
    for name, gradient in reference.items():
        torch.testing.assert_close(recomputed[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


class _BackboneBeforeTheRename(torch.nn.Module):
    """A backbone as transformers before 5.23 has it: checkpointing only under ``gradient_checkpointing_enable``."""

    supports_gradient_checkpointing = True

    def __init__(self) -> None:
        super().__init__()
        self.enabled_with: list[dict] = []

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict) -> None:
        self.enabled_with.append(gradient_checkpointing_kwargs)


def test_activation_checkpointing_uses_the_old_name_on_transformers_before_5_23():
    backbone = _BackboneBeforeTheRename()
    enable_activation_checkpointing(SimpleNamespace(get_base_model=lambda: backbone))
    assert backbone.enabled_with == [{"use_reentrant": False}]


def test_activation_checkpointing_on_a_backbone_without_support_is_refused(tiny_assets):
    backbone, _ = load_backbone(tiny_assets["backbone"])
    type(backbone).supports_gradient_checkpointing  # noqa: B018  (the attribute the check reads exists)
    backbone.supports_gradient_checkpointing = False
    with pytest.raises(
        InvalidConfigError, match="does not support activation checkpointing.*activation_checkpointing: false"
    ):
        build_model("puma", backbone, small("puma"), activation_checkpointing=True)


def test_torch_compile_trains_the_same_step_as_eager(tiny_assets):
    """`torch_compile: true`: the compiled training step gives eager mode's loss and gradients, the gates drawn from
    the same random stream; the compiled model keeps its parameter names (saving is unchanged). The aot_eager backend
    traces forward and backward as inductor does without a C++ compiler (seconds, not minutes, on 2 cores); inductor's
    speed is measured by benchmarks/cost.py."""
    from peft_puma.losses import make_loss

    pixels = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    eager = build_model("puma", load_backbone(tiny_assets["backbone"])[0], small("puma"))
    compiled = build_model("puma", load_backbone(tiny_assets["backbone"])[0], small("puma"))
    compiled.load_state_dict(eager.state_dict())
    torch._dynamo.reset()
    compile_for_training(compiled, backend="aot_eager")
    assert compiled.state_dict().keys() == eager.state_dict().keys()

    def step(model):
        model.train().zero_grad()
        torch.manual_seed(3)  # the loss's proxies and the gates: the same draws in both runs
        loss_fn = make_loss("curricularface", num_classes=3, embedding_size=16)
        loss = loss_fn(model(pixel_values=pixels).embeddings, labels)
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}

    eager_loss, eager_grads = step(eager)
    for _ in range(2):  # the first call compiles; the second runs the compiled graph with new gates
        compiled_loss, compiled_grads = step(compiled)
    torch.testing.assert_close(compiled_loss, eager_loss, atol=1e-5, rtol=1e-5)
    assert eager_grads.keys() == compiled_grads.keys()
    for name, gradient in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], gradient, atol=1e-5, rtol=1e-4, msg=name)
    # U = 0 at init, so D has no gradient yet: U's show that the adapters train
    assert any(g.abs().sum() > 0 for name, g in compiled_grads.items() if "puma_up" in name)
