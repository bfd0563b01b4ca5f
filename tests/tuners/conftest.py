"""Fixtures shared by the tuner tests."""

from __future__ import annotations

import pytest
import torch

from .tiny_models import IMAGE, make_vit


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def backbone_dir(tmp_path):
    """The tiny ViT saved as a transformers folder, as a user's backbone would be."""
    path = tmp_path / "backbone"
    make_vit().save_pretrained(path)
    return path
