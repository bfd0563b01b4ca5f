"""transformers' own adapter API refuses PUMA adapters with advice, never loads them silently with untrained weights."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model, inject_adapter_in_model
from transformers import AutoModel, ViTModel

import peft_puma
from peft_puma import IncompatibleCheckpointError, UnsupportedModelError
from peft_puma.tuners.puma import PUMALayer, TransformersIntegrationError

from .tiny_models import load_backbone, randomize_adapters

SMALL = dict(r=8, num_prompts=4, prompt_length=3, embedding_size=16)
# The advice every refusal carries: what to call instead, and that peft_puma must be imported first.
ADVICE = r"import peft_puma.*peft\.PeftModel\.from_pretrained\(model, path\)"


@pytest.fixture
def adapter_dir(backbone_dir, tmp_path):
    model = get_peft_model(load_backbone(backbone_dir), peft_puma.PUMAConfig(**SMALL))
    randomize_adapters(model)
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def assert_untouched(model) -> None:
    assert not any(isinstance(m, PUMALayer) for m in model.modules())
    assert not any("puma_" in name for name, _ in model.named_parameters())
    assert not getattr(model, "_hf_peft_config_loaded", False)
    assert not model._forward_hooks and not model._forward_pre_hooks


def test_load_adapter_refuses_with_advice_and_leaves_the_model_untouched(backbone_dir, adapter_dir):
    model = load_backbone(backbone_dir)
    with pytest.raises(TransformersIntegrationError, match=ADVICE) as error:
        model.load_adapter(str(adapter_dir))
    assert str(backbone_dir) in str(error.value)  # names the base model to load the adapter onto
    assert_untouched(model)


def test_load_adapter_with_a_config_and_state_dict_refuses(backbone_dir, adapter_dir):
    from safetensors.torch import load_file

    model = load_backbone(backbone_dir)
    with pytest.raises(TransformersIntegrationError, match=ADVICE):
        model.load_adapter(
            peft_config=peft_puma.PUMAConfig.from_pretrained(str(adapter_dir)),
            adapter_state_dict=load_file(adapter_dir / "adapter_model.safetensors"),
        )
    assert_untouched(model)


def test_add_adapter_refuses_with_advice_instead_of_asking_for_another_peft(backbone_dir):
    model = load_backbone(backbone_dir)
    with pytest.raises(TransformersIntegrationError, match=ADVICE):
        model.add_adapter(peft_puma.PUMAConfig())
    with pytest.raises(TransformersIntegrationError, match=ADVICE):
        model.add_adapter(adapter_config=peft_puma.PUMAConfig(), adapter_name="puma")
    assert_untouched(model)


@pytest.mark.parametrize(
    "load",
    [
        lambda path: AutoModel.from_pretrained(path),
        lambda path: ViTModel.from_pretrained(path, add_pooling_layer=False),
    ],
    ids=["AutoModel", "ViTModel"],
)
def test_from_pretrained_on_an_adapter_folder_refuses(adapter_dir, load):
    with pytest.raises(TransformersIntegrationError, match=ADVICE):
        load(str(adapter_dir))


def test_inject_adapter_in_model_refuses(backbone_dir):
    model = load_backbone(backbone_dir)
    with pytest.raises(TransformersIntegrationError, match="peft.get_peft_model"):
        inject_adapter_in_model(peft_puma.PUMAConfig(**SMALL), model)
    assert_untouched(model)


def test_the_refusal_is_caught_as_either_kind_of_peft_puma_error(backbone_dir, adapter_dir):
    with pytest.raises(IncompatibleCheckpointError):
        load_backbone(backbone_dir).load_adapter(str(adapter_dir))
    with pytest.raises(UnsupportedModelError):
        load_backbone(backbone_dir).add_adapter(peft_puma.PUMAConfig())


def test_the_advised_call_loads_the_trained_adapter(backbone_dir, adapter_dir, pixels):
    """The refused model, after the error, still takes the advised route, and that gives the trained weights."""
    model = load_backbone(backbone_dir)
    with pytest.raises(TransformersIntegrationError):
        model.load_adapter(str(adapter_dir))
    loaded = PeftModel.from_pretrained(model, adapter_dir).eval()
    expected = PeftModel.from_pretrained(load_backbone(backbone_dir), adapter_dir).eval()
    torch.testing.assert_close(loaded(pixel_values=pixels).embeddings, expected(pixel_values=pixels).embeddings)
    untrained = get_peft_model(load_backbone(backbone_dir), peft_puma.PUMAConfig(**SMALL)).eval()
    assert not torch.equal(loaded(pixel_values=pixels).embeddings, untrained(pixel_values=pixels).embeddings)


def test_other_adapters_still_go_through_transformers_unchanged(backbone_dir):
    """The guard intercepts PUMA configs only: for LoRA, ``add_adapter`` answers exactly as transformers' own does
    (with PEFT 0.21, transformers 5.23 and later refuse at their PEFT version check; earlier ones add the adapter)."""
    from transformers.integrations.peft import PeftAdapterMixin

    own_add_adapter = PeftAdapterMixin.add_adapter.__wrapped__

    def answer(add_adapter) -> object:
        model = load_backbone(backbone_dir)
        try:
            add_adapter(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
        except Exception as error:  # noqa: BLE001 - the answer compared is whatever transformers gives
            return type(error), str(error)
        return sorted(name for name, _ in model.named_parameters())

    guarded = answer(lambda model, config: model.add_adapter(config))
    assert guarded == answer(own_add_adapter)
    assert not (isinstance(guarded, tuple) and issubclass(guarded[0], peft_puma.PUMAError))
    model = load_backbone(backbone_dir)
    inject_adapter_in_model(LoraConfig(r=2, target_modules=["q_proj", "v_proj"]), model)
    assert any("lora_A" in name for name, _ in model.named_parameters()), "PEFT's low-level API works for others"


def test_the_guard_is_installed_once():
    from transformers.integrations.peft import PeftAdapterMixin

    from peft_puma.tuners.puma.registration import register

    guarded = PeftAdapterMixin.add_adapter
    register()
    assert PeftAdapterMixin.add_adapter is guarded
    assert guarded.__wrapped__.__name__ == "add_adapter"
