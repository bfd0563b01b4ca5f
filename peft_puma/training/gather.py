"""All-gather of the batch for the loss, keeping the gradient of this process's part (docs/spec.md section 6).

The loss sees the global batch (``per_device_batch_size x num_processes`` embeddings): a proxy loss normalises over
more samples, a pair loss finds more pairs. ``accelerator.gather`` has no gradient, so the gathered tensor is built
without one and this process's own slice is put back as the live tensor: the loss's gradient then flows into this
process's embeddings only, and DDP's gradient averaging combines the processes, as in the published code.
"""

from __future__ import annotations

from typing import Any

import torch


def gather_keep_local_grad(local: torch.Tensor, accelerator: Any) -> torch.Tensor:
    """``(num_processes * B, ...)``: every process's ``local`` (all of shape ``(B, ...)``) in process order, with
    this process's slice being ``local`` itself (differentiable) and the others constants."""
    if accelerator is None or accelerator.num_processes == 1:
        return local
    with torch.no_grad():
        gathered = accelerator.gather(local.detach().contiguous())
    size = local.shape[0]
    start = accelerator.process_index * size
    return torch.cat([gathered[:start], local, gathered[start + size :]])


def gather_labels(labels: torch.Tensor, accelerator: Any) -> torch.Tensor:
    """The labels of the global batch, in the order of :func:`gather_keep_local_grad`."""
    if accelerator is None or accelerator.num_processes == 1:
        return labels
    return accelerator.gather(labels.contiguous())
