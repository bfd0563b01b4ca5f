"""Fixtures shared by the tuner tests."""

from __future__ import annotations

import pytest
import torch

from .tiny_models import IMAGE


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
