"""The safetensors files peft_puma writes are as readable as the JSON beside them (the umask decides), not 0600."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from peft import get_peft_model
from transformers import ViTConfig, ViTModel

import peft_puma
from peft_puma.inference.embeddings_file import save_embeddings


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_saved_adapter_is_readable_by_the_group_as_its_config(tmp_path, umask_022):
    vit = ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                             image_size=16, patch_size=8))  # fmt: skip
    model = get_peft_model(vit, peft_puma.PUMAConfig(r=2, num_prompts=2, prompt_length=1, embedding_size=4))
    model.add_adapter("other", peft_puma.PUMAConfig(r=2, num_prompts=2, prompt_length=1, embedding_size=4))
    model.save_pretrained(tmp_path)
    for folder in (tmp_path, tmp_path / "other"):
        assert _mode(folder / "adapter_model.safetensors") == 0o644 == _mode(folder / "adapter_config.json")


def test_an_embeddings_file_gets_the_mode_of_the_umask(tmp_path, umask_022):
    save_embeddings(str(tmp_path / "e.safetensors"), torch.zeros(2, 3), labels=[0, 1])
    assert _mode(tmp_path / "e.safetensors") == 0o644
    os.umask(0o077)
    save_embeddings(str(tmp_path / "private.safetensors"), torch.zeros(2, 3))
    assert _mode(tmp_path / "private.safetensors") == 0o600
