"""The backbone fingerprint: equal for the same weights wherever they are loaded from, different when one value is."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ViTConfig, ViTModel

from peft_puma.backbones.fingerprint import backbone_fingerprint, fingerprint_of


def _vit(seed: int = 0) -> ViTModel:
    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16,
                       patch_size=4)  # fmt: skip
    return ViTModel(config, add_pooling_layer=False)


def test_the_same_weights_give_the_same_fingerprint_wherever_they_are_saved(tmp_path: Path):
    model = _vit()
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    loaded = ViTModel.from_pretrained(tmp_path / "b", add_pooling_layer=False)
    assert backbone_fingerprint(model) == backbone_fingerprint(loaded) == backbone_fingerprint(_vit())
    assert backbone_fingerprint(model).startswith("sha256:") and len(backbone_fingerprint(model)) == 7 + 64
    for parameter in loaded.parameters():  # frozen or not, the weights are what counts
        parameter.requires_grad_(False)
    assert backbone_fingerprint(loaded) == backbone_fingerprint(model)


def test_one_changed_value_or_another_seed_changes_the_fingerprint():
    model = _vit()
    before = backbone_fingerprint(model)
    with torch.no_grad():
        model.layernorm.bias[0] += 1e-6
    assert backbone_fingerprint(model) != before
    assert backbone_fingerprint(_vit(seed=1)) != before


def test_fingerprint_of_a_folder_is_that_of_the_backbone_the_trainer_loads(tmp_path: Path):
    from transformers import ViTImageProcessor

    from peft_puma.backbones.loading import load_backbone

    model = _vit()
    model.save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "vit")
    assert fingerprint_of(str(tmp_path / "vit")) == backbone_fingerprint(load_backbone(str(tmp_path / "vit"))[0])
    assert fingerprint_of(str(tmp_path / "vit")) == backbone_fingerprint(model)
