"""Using a trained run: loading it for inference, embedding images across processes, and its run file.

- :mod:`.loading`: :func:`load_for_inference` (a run's folder, or the zero-shot backbone, as a model in eval mode with
  its image processor), :class:`AdaptersOff`, :func:`check_adapter_source`;
- :mod:`.embedding`: :func:`embed_images` (rows in, ``(N, D)`` embeddings in row order on every process),
  :func:`dataset_batch_loader`, :func:`embed_split` / :func:`score_split` / :func:`evaluate_split` (the paper's table
  on a test split, docs/spec.md section 7);
- :mod:`.run_file`: ``peft_puma_training.json``, written by the trainer and read by evaluation, embedding, search and
  the benchmarks, as a :class:`RunRecord`.

Used by ``python -m peft_puma.train`` (final evaluation), ``peft_puma.evaluate``, ``peft_puma.embed`` and
``peft_puma.search``. Exports load lazily, so importing one module (the run file's) does not load the others.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

# Loaded on first use (import time): reading a run file must not load the model and embedding code.
_EXPORTS = {
    "ADAPTER_FILES": ".loading",
    "AdaptersOff": ".loading",
    "check_adapter_source": ".loading",
    "load_for_inference": ".loading",
    "dataset_batch_loader": ".embedding",
    "embed_images": ".embedding",
    "embed_split": ".embedding",
    "evaluate_split": ".embedding",
    "score_split": ".embedding",
    "RUN_FILE": ".run_file",
    "RunRecord": ".run_file",
    "read_run_file": ".run_file",
    "write_run_file": ".run_file",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
