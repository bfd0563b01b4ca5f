"""Per-query retrieval metrics from ranked neighbour matches: Recall@k, MAP@R, R-Precision (docs/spec.md section 7).

Every function takes ``matches``, a ``(Q, K)`` bool tensor whose entry ``[q, i]`` says whether the ``i``-th nearest
gallery row of query ``q`` (best first, the query itself already excluded) has the query's label, and returns one value
per query; the caller averages. ``R`` is the number of gallery rows sharing the query's label, the query itself not
counted. Definitions follow Musgrave et al., "A Metric Learning Reality Check" (ECCV 2020), as does
pytorch-metric-learning's ``AccuracyCalculator``:

- Recall@k: 1 if any of the ``k`` nearest neighbours has the query's label, else 0 (the metric-learning "Recall@k",
  which is Precision@1 for k = 1).
- R-Precision: the fraction of the ``R`` nearest neighbours that have the query's label.
- MAP@R: ``(1 / R) * sum_{i <= R} P(i) * rel(i)``, with ``P(i)`` the precision of the first ``i`` neighbours and
  ``rel(i)`` whether the ``i``-th neighbour matches; like average precision, but only over the first ``R`` neighbours.

A query with ``R = 0`` has no defined MAP@R or R-Precision; the caller decides what to do with it (see
``evaluate_retrieval``). ``matches`` must hold at least ``max(k)`` columns and at least ``R`` for every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def label_matches(
    query_labels: torch.Tensor, neighbour_indices: torch.Tensor, gallery_labels: torch.Tensor
) -> torch.Tensor:
    """``(Q, K)`` bool: whether each neighbour (gallery position) carries its query's label."""
    return gallery_labels[neighbour_indices] == query_labels.unsqueeze(1)


def recall_at_k(matches: torch.Tensor, ks: Sequence[int]) -> dict[int, torch.Tensor]:
    """Per query and per ``k``: 1.0 if a match is among the first ``k`` neighbours, else 0.0."""
    hit_rank = _first_match_rank(matches)
    return {k: (hit_rank < k).double() for k in ks}


def r_precision(matches: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    """Per query: matches among the first ``R`` neighbours, divided by ``R`` (``num_relevant``, all > 0)."""
    within_r = _within_r(matches, num_relevant)
    return (matches & within_r).sum(dim=1).double() / num_relevant.double()


def map_at_r(matches: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    """Per query: average precision over the first ``R`` neighbours, normalised by ``R`` (``num_relevant``, all > 0)."""
    relevant = matches & _within_r(matches, num_relevant)
    ranks = torch.arange(1, matches.shape[1] + 1, dtype=torch.float64, device=matches.device)
    precision_at_i = relevant.double().cumsum(dim=1) / ranks
    return (precision_at_i * relevant).sum(dim=1) / num_relevant.double()


def _within_r(matches: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(matches.shape[1], device=matches.device)
    return positions.unsqueeze(0) < num_relevant.unsqueeze(1)


def _first_match_rank(matches: torch.Tensor) -> torch.Tensor:
    """0-based position of the first match of each row; ``K`` (one past the end) for rows without a match."""
    num_columns = matches.shape[1]
    positions = torch.arange(num_columns, device=matches.device).expand_as(matches)
    return torch.where(matches, positions, num_columns).min(dim=1).values
