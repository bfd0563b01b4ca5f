"""What a results file holds (the trainer's ``results.json``, ``evaluate --output``): the scores, and what makes them
traceable on their own: the split scored, the data, the frozen weights and the code."""

from __future__ import annotations

from typing import Any

from ..source_commit import source_commit


def results_record(
    result: dict[str, Any], split: str, data_source: Any, backbone_fingerprint: str | None
) -> dict[str, Any]:
    """``result`` (the mapping of :func:`peft_puma.evaluation.evaluate_retrieval`) with the split it scores, the data
    source, the backbone's fingerprint (None where unknown) and the checkout's commit."""
    return {
        **result,
        "split": split,
        "data_source": data_source,
        "backbone_fingerprint": backbone_fingerprint,
        "commit": source_commit(),
    }
