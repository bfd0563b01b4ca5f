"""Run a metric-learning loss in float32 with autocast disabled (docs/spec.md section 5; docs/losses.md).

pytorch-metric-learning's proxy losses cast their learnable weights to the embeddings' dtype *in place*
(``cast_types``): under fp16/bf16 autocast the proxies, and the optimiser state built on them, silently become half
precision. Handing them float32 embeddings outside autocast keeps the proxies float32 and the logits exact.
"""

from __future__ import annotations

import torch
from torch import nn


class Float32Loss(nn.Module):
    """Wraps a loss ``loss(embeddings, labels)`` so that it always sees float32 embeddings with autocast off.

    The wrapped module is ``self.loss``; ``parameters()`` are its parameters (the proxies of a proxy loss), unchanged.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.loss(embeddings.float(), labels)
