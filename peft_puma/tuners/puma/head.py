"""The embedding head (arXiv 2309.08944), wrapped around the backbone's final LayerNorm."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layer import PUMAWrapper


class EmbeddingHead(PUMAWrapper):
    """``embedding = normalize(Linear(LN_final(x)[CLS]))``; the LayerNorm's own output passes through unchanged.

    The embedding of the last forward waits in :meth:`pop_embeddings` for the model-level hook that puts it into the
    output. With adapters disabled the head is skipped too, giving the frozen model's normalised CLS feature (the
    paper's zero-shot baseline).
    """

    adapter_layer_names = ("puma_projection",)

    def __init__(self, base_layer: nn.Module, hidden_size: int, adapter_name: str, config) -> None:
        super().__init__()
        self._init_puma_layer(base_layer, "head")
        self.hidden_size = hidden_size
        self.puma_projection = nn.ModuleDict()
        self._embeddings: torch.Tensor | None = None
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config) -> None:
        self.puma_projection[adapter_name] = nn.Linear(self.hidden_size, config.embedding_size)  # PyTorch default init
        self._move_to_base_device(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        normed = self.base_layer(hidden_states, *args, **kwargs)
        cls = normed[:, 0] if normed.ndim == 3 else normed  # CLIP's post_layernorm already sees only CLS
        adapter_name = self.active_puma_adapter()
        if adapter_name is not None:
            head = self.puma_projection[adapter_name]
            cls = head(cls.to(head.weight.dtype))
        self._embeddings = F.normalize(cls.float(), dim=-1)
        return normed

    def pop_embeddings(self) -> torch.Tensor | None:
        embeddings, self._embeddings = self._embeddings, None
        return embeddings
