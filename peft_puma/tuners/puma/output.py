"""What a PUMA model's forward returns: the retrieval embeddings beside the backbone's own output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput


@dataclass
class PUMAOutput(ModelOutput):
    """``embeddings``: (B, embedding_size) L2-normalised, what retrieval needs; ``backbone_output``: what the wrapped
    transformers model returned (its ``last_hidden_state`` holds the prompt tokens right after the prefix tokens).

    Attributes of the backbone output are readable here too (``outputs.logits`` for a classification backbone).
    """

    embeddings: torch.Tensor | None = None
    backbone_output: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        backbone_output = self.__dict__.get("backbone_output")
        if backbone_output is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(backbone_output, name)
