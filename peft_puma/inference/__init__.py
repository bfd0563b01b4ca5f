"""Using a trained run: loading it for inference, and embedding images across processes.

- :mod:`.loading`: :func:`load_for_inference` (a run's folder, or the zero-shot backbone, as a model in eval mode with
  its image processor), :class:`AdaptersOff`, :func:`check_adapter_source`;
- :mod:`.embedding`: :func:`embed_images` (rows in, ``(N, D)`` embeddings in row order on every process),
  :func:`dataset_batch_loader`, :func:`embed_split` / :func:`evaluate_split` (the paper's table on a test split,
  docs/spec.md section 7).

Used by ``python -m peft_puma.train`` (final evaluation), ``peft_puma.evaluate``, ``peft_puma.embed`` and
``peft_puma.search``. The run folder these read is :mod:`peft_puma.runs`.
"""

from __future__ import annotations

from .embedding import dataset_batch_loader, embed_images, embed_split, evaluate_split
from .loading import AdaptersOff, check_adapter_source, load_for_inference

__all__ = [
    "AdaptersOff",
    "check_adapter_source",
    "dataset_batch_loader",
    "embed_images",
    "embed_split",
    "evaluate_split",
    "load_for_inference",
]
