"""Portable checkpoints refuse what does not fit; every user mistake gets a clear, specific error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel, Dinov2Backbone, Dinov2Config, Dinov2ForImageClassification

import peft_puma
from peft_puma import IncompatibleCheckpointError, InvalidConfigError, InvalidInputError, UnsupportedModelError

from .tiny_models import COMMON, make_family, make_vit

REPO = Path(__file__).resolve().parents[2]

SMALL = dict(r=8, num_prompts=4, prompt_length=3, embedding_size=16)


@pytest.fixture
def saved(tmp_path):
    model = get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL))
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


@pytest.mark.parametrize(
    ("backbone", "reason"),
    [
        (lambda: make_vit(hidden_size=48, num_attention_heads=2), "hidden size 32, this model has 48"),
        (lambda: make_vit(num_hidden_layers=3), "up to layer 1, this model's adapters go up to layer 2"),
        (lambda: make_family("clip"), "made for a 'vit' backbone.*'clip'"),
        (lambda: make_family("deit"), "made for a 'vit' backbone.*'deit'"),
    ],
    ids=["other-hidden-size", "other-depth", "other-architecture", "other-prefix-layout"],
)
def test_checkpoint_for_another_backbone_is_refused_with_the_reason(saved, backbone, reason):
    with pytest.raises(IncompatibleCheckpointError, match=reason):
        PeftModel.from_pretrained(backbone(), saved)


def test_checkpoint_loads_into_the_same_encoder_under_other_module_paths(saved, pixels):
    """Canonical keys do not depend on module paths: a ViTModel adapter fits ViTForImageClassification (`vit.`...)."""
    encoder = PeftModel.from_pretrained(make_vit(), saved).eval()
    classifier = PeftModel.from_pretrained(make_family("vit_classifier"), saved).eval()
    expected = encoder.base_model.model.layers[0].attention.puma_down["default"]
    torch.testing.assert_close(classifier.base_model.model.vit.layers[0].attention.puma_down["default"], expected)
    torch.testing.assert_close(classifier(pixel_values=pixels).embeddings, encoder(pixel_values=pixels).embeddings)


def test_checkpoint_with_missing_keys_is_refused(saved):
    tensors = load_file(saved / "adapter_model.safetensors")
    del tensors["puma.layers.1.mlp.up"]
    save_file(tensors, saved / "adapter_model.safetensors")
    with pytest.raises(IncompatibleCheckpointError, match=r"1 key\(s\) missing from the checkpoint.*layers.1.mlp.up"):
        PeftModel.from_pretrained(make_vit(), saved)


def test_checkpoint_with_foreign_keys_is_refused(saved):
    tensors = load_file(saved / "adapter_model.safetensors")
    tensors["base_model.model.layers.0.attention.lora_A.weight"] = torch.zeros(2, 2)
    save_file(tensors, saved / "adapter_model.safetensors")
    with pytest.raises(IncompatibleCheckpointError, match="not a PUMA checkpoint"):
        PeftModel.from_pretrained(make_vit(), saved)


def test_pickled_weights_are_never_loaded(saved):
    tensors = load_file(saved / "adapter_model.safetensors")
    os.remove(saved / "adapter_model.safetensors")
    torch.save(tensors, saved / "adapter_model.bin")
    with pytest.raises(IncompatibleCheckpointError, match="pickle file.*only adapter_model.safetensors"):
        PeftModel.from_pretrained(make_vit(), saved)


def test_loading_without_import_peft_puma_fails_as_keyerror_puma_as_the_docs_explain(saved):
    script = (
        "from peft import PeftModel\n"
        "from transformers import ViTConfig, ViTModel\n"
        f"PeftModel.from_pretrained(ViTModel(ViTConfig(**{COMMON!r})), {str(saved)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1] == "KeyError: 'PUMA'"
    assert "**`KeyError: 'PUMA'`**" in (REPO / "docs" / "puma.md").read_text()


@pytest.mark.parametrize(
    ("make_model", "message"),
    [
        (
            lambda: BertModel(
                BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
            ),
            "BertModel: it is not a supported ViT-family image encoder",
        ),
        (lambda: Dinov2ForImageClassification(Dinov2Config(**COMMON)), "averages patch tokens"),
        (lambda: Dinov2Backbone(Dinov2Config(**COMMON, out_features=["stage1"])), "spatial Backbone"),
    ],
    ids=["text-model", "patch-averaging-head", "spatial-backbone"],
)
def test_unsupported_models_are_refused_naming_the_supported_ones(make_model, message):
    with pytest.raises(UnsupportedModelError, match=message) as error:
        get_peft_model(make_model(), peft_puma.PUMAConfig(**SMALL))
    assert "ViTModel" in str(error.value) and "CLIPVisionModel" in str(error.value)


def test_layers_beyond_the_model_are_refused():
    with pytest.raises(UnsupportedModelError, match=r"layers \[5\].*2 layers"):
        get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL, layers=[0, 5]))


@pytest.fixture
def model():
    return get_peft_model(make_vit(), peft_puma.PUMAConfig(**SMALL)).eval()


def test_attention_masks_are_refused(model, pixels):
    with pytest.raises(UnsupportedModelError, match="attention mask"):
        model(pixel_values=pixels, attention_mask=torch.ones(3, 17))


def test_masked_patches_are_refused(model, pixels):
    with pytest.raises(UnsupportedModelError, match="masked patches"):
        model(pixel_values=pixels, bool_masked_pos=torch.zeros(3, 16, dtype=torch.bool))


@pytest.mark.parametrize(
    ("pixel_values", "message"),
    [
        (None, "`pixel_values` tensor"),
        (torch.zeros(3, 16, 16), r"shape \(batch, 3, height, width\)"),
        (torch.zeros(2, 1, 16, 16), r"got \(2, 1, 16, 16\)"),
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "floating-point"),
    ],
    ids=["missing", "3d", "wrong-channels", "integer"],
)
def test_bad_pixel_values_get_a_clear_error(model, pixel_values, message):
    with pytest.raises(InvalidInputError, match=message):
        model(pixel_values=pixel_values)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("r", 0, "positive integer"),
        ("keep_prob", 0.0, r"\(0, 1\]"),
        ("keep_prob", 1.5, r"\(0, 1\]"),
        ("num_prompts", 2.5, "positive integer"),
        ("scale", float("nan"), "finite"),
        ("scale", 0.0, "must be > 0"),
        ("scale", -0.1, "must be > 0"),
        ("layers", [], "non-empty list"),
        ("layers", [1, 1], "repeated"),
        ("use_prompts", "yes", "True or False"),
        ("regularization_weight", -1.0, ">= 0"),
    ],
)
def test_invalid_config_values_are_refused(field, value, message):
    with pytest.raises(InvalidConfigError, match=message):
        peft_puma.PUMAConfig(**{field: value})


def test_config_defaults_are_the_published_method():
    config = peft_puma.PUMAConfig()
    assert (config.r, config.scale, config.train_scale, config.keep_prob, config.layers) == (128, 0.1, False, 0.5, None)
    assert (config.num_prompts, config.prompt_length, config.embedding_size) == (20, 8, 128)
    assert config.use_adapters and config.use_prompts and config.conditional_prompts
    assert config.regularization_weight == 1.0


def test_presets_are_the_published_variants():
    assert peft_puma.PUMAConfig.from_preset("static_adapter").keep_prob == 1.0
    assert not peft_puma.PUMAConfig.from_preset("static_adapter").use_prompts
    single = peft_puma.PUMAConfig.from_preset("single_prompt")
    assert single.num_prompts == 1 and not single.conditional_prompts and not single.use_adapters
    with pytest.raises(InvalidConfigError, match="Unknown PUMA preset 'lora'.*static_adapter"):
        peft_puma.PUMAConfig.from_preset("lora")


def test_config_factory_accepts_a_name_a_dict_a_file_and_a_config(saved):
    assert peft_puma.PUMAConfig.from_any("single_prompt").num_prompts == 1
    assert peft_puma.PUMAConfig.from_any({"r": 4}).r == 4
    assert peft_puma.PUMAConfig.from_any(saved).r == 8
    assert peft_puma.PUMAConfig.from_any(saved / "adapter_config.json", r=2).r == 2
    assert peft_puma.PUMAConfig.from_any(peft_puma.PUMAConfig(r=3)).r == 3
    with pytest.raises(InvalidConfigError, match="Unknown PUMAConfig fields \\['rank'\\]"):
        peft_puma.PUMAConfig.from_any({"rank": 4})


def test_registration_is_idempotent_and_in_peft_enums():
    from peft import PeftType, TaskType
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    from peft_puma.tuners.puma.registration import register

    register()
    register()
    assert PeftType("PUMA") is PeftType.PUMA and "PUMA" in list(PeftType)
    assert TaskType("IMAGE_EMBEDDING") in list(TaskType)
    assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.PUMA] is peft_puma.PUMAConfig


def test_installed_peft_is_in_the_supported_range():
    import peft
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    assert Version(peft.__version__) in SpecifierSet(peft_puma.SUPPORTED_PEFT_VERSIONS)


def _edit_saved_config(folder, **changes) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


UNKNOWN_FIELDS = r"Unknown PUMAConfig fields \['prompt_depth', 'rank'\]; accepted fields: \[.*'embedding_size'.*'r'.*\]"


@pytest.mark.parametrize(
    "load",
    [
        lambda folder: PeftModel.from_pretrained(make_vit(), folder),
        lambda folder: PeftConfig.from_pretrained(str(folder)),  # the route of transformers' load_adapter
        lambda folder: peft_puma.PUMAConfig.from_pretrained(str(folder)),
        lambda folder: peft_puma.PUMAConfig.from_any(folder),
        lambda folder: peft_puma.PUMAConfig.from_any(folder / "adapter_config.json"),
    ],
    ids=[
        "PeftModel.from_pretrained",
        "PeftConfig.from_pretrained",
        "PUMAConfig.from_pretrained",
        "from_any-folder",
        "from_any-file",
    ],
)
def test_unknown_fields_in_a_saved_config_are_refused_on_every_path(saved, load):
    _edit_saved_config(saved, rank=4, prompt_depth=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PEFT's own handling would only warn ("upgrade PEFT") and drop the keys
        with pytest.raises(InvalidConfigError, match=UNKNOWN_FIELDS):
            load(saved)


@pytest.mark.parametrize("value", [0, -0.1, "0.1"])
def test_a_hand_edited_scale_is_checked_on_loading_like_the_other_fields(saved, value):
    _edit_saved_config(saved, scale=value)
    with pytest.raises(InvalidConfigError, match=r"The adapter_config.json of .*PUMAConfig.scale"):
        PeftModel.from_pretrained(make_vit(), saved)


def test_unknown_fields_are_refused_when_building_a_config():
    with pytest.raises(InvalidConfigError, match=r"Unknown PUMAConfig fields \['rank'\]; accepted fields"):
        peft_puma.PUMAConfig(rank=4)
    assert peft_puma.PUMAConfig(r=4, peft_type="PUMA", inference_mode=True).r == 4  # PEFT's own fields are fields


def test_saved_peft_type_is_the_method_name_as_peft_saves_its_own(saved):
    assert json.loads((saved / "adapter_config.json").read_text())["peft_type"] == "PUMA"


def test_adapters_saved_with_the_old_peft_type_text_still_load(saved, pixels):
    from peft_puma.tuners.puma.registration import LEGACY_SAVED_PEFT_TYPES

    expected = PeftModel.from_pretrained(make_vit(), saved).eval()(pixel_values=pixels).embeddings
    assert len(LEGACY_SAVED_PEFT_TYPES) == 2
    for old in LEGACY_SAVED_PEFT_TYPES:
        _edit_saved_config(saved, peft_type=old)
        model = PeftModel.from_pretrained(make_vit(), saved).eval()
        assert model.peft_config["default"].peft_type == "PUMA"
        torch.testing.assert_close(model(pixel_values=pixels).embeddings, expected, atol=0, rtol=0)
        model.save_pretrained(saved)  # re-saving writes the method's name
        assert json.loads((saved / "adapter_config.json").read_text())["peft_type"] == "PUMA"
