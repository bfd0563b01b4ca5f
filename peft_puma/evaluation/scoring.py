"""Scoring a split of a unified dataset: the paper's table (docs/spec.md section 7) from the split's embeddings and
its ``label``, ``dataset`` and ``role`` columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.schema import DATASET_COLUMN, LABEL_COLUMN, ROLE_COLUMN, column_values
from .retrieval import check_retrieval, evaluate_retrieval


def score_split(embeddings: torch.Tensor, test: Any, ks: Sequence[int] = (1, 2, 4, 8)) -> dict[str, Any]:
    """:func:`peft_puma.evaluation.evaluate_retrieval` of a split's embeddings, with its labels, datasets, roles.

    Recall@1 is scored whatever ``ks`` holds: it is the paper's headline figure, the one every results table, log
    line, model card and test-read record shows (``--eval_ks 2`` scores Recall@1 and Recall@2).
    """
    return evaluate_retrieval(
        embeddings,
        column_values(test, LABEL_COLUMN),
        domains=column_values(test, DATASET_COLUMN),
        roles=column_values(test, ROLE_COLUMN),
        ks=tuple(sorted({1, *ks})),
    )


def check_split(test: Any, ks: Sequence[int] = (1, 2, 4, 8)) -> None:
    """Raise now what :func:`score_split` would raise once the split is embedded (a k larger than a dataset's
    gallery, ...): a run checks the splits it will score before it trains."""
    check_retrieval(
        column_values(test, LABEL_COLUMN),
        domains=column_values(test, DATASET_COLUMN),
        roles=column_values(test, ROLE_COLUMN),
        ks=tuple(ks),
    )
