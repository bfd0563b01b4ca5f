"""What a results file holds (the trainer's ``results.json``, ``evaluate --output``): the scores, and what makes them
traceable on their own: the split scored, the data, the frozen weights and the code."""

from __future__ import annotations

from typing import Any

from ..source_commit import source_commit


def results_record(
    result: dict[str, Any],
    split: str,
    data_source: Any,
    backbone_fingerprint: str | None,
    training_seed: int | None = None,
) -> dict[str, Any]:
    """``result`` (the mapping of :func:`peft_puma.evaluation.evaluate_retrieval`) with the split it scores, the data
    source, the backbone's fingerprint (None where unknown), the seed the adapter was trained with (None for the
    zero-shot backbone or where unknown; the data source's own ``seed`` is the data build's) and the checkout's
    commit."""
    return {
        **result,
        "split": split,
        "data_source": data_source,
        "backbone_fingerprint": backbone_fingerprint,
        "training_seed": training_seed,
        "commit": source_commit(),
    }
