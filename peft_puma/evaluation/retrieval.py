"""``evaluate_retrieval``: embeddings + labels + dataset names -> the paper's Table 2 row (method.md section 7).

Three views of the same test rows:

- ``unified``: every query against the union of every gallery, labels made unique per ``(dataset, label)``,
  micro-averaged over all queries (the paper's "Unified" column).
- ``per_dataset``: each dataset's queries against its own gallery only ("dataset-specific accuracy").
- ``harmonic``: the harmonic mean over datasets of each ``per_dataset`` metric (the paper reports it for Recall@1).

A row's role says how it takes part: ``"both"`` (leave-one-out: a query, and in the gallery, never its own neighbour),
``"query"`` or ``"gallery"`` (In-shop's separate lists). Neighbours are exact by cosine similarity, ranked by similarity
then by row order for exact ties (see :mod:`peft_puma.evaluation.knn`).

Queries without any relevant gallery row (``R = 0``: a class of size one in leave-one-out, or an In-shop query whose
item is missing from the gallery) have no defined MAP@R or R-Precision. By default they are left out of every metric,
as pytorch-metric-learning's ``AccuracyCalculator`` does, and counted in ``num_unmatched_queries``; they still sit in
the gallery as distractors for the other queries. ``unmatched_queries="error"`` raises instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from peft_puma.errors import InvalidInputError
from peft_puma.evaluation.inputs import as_embeddings, as_ks, as_labels, as_roles, as_strings, global_labels
from peft_puma.evaluation.knn import Backend, iter_nearest_neighbours
from peft_puma.evaluation.metrics import label_matches, map_at_r, r_precision, recall_at_k

UnmatchedPolicy = Literal["skip", "error"]
UNMATCHED_POLICIES: tuple[str, ...] = ("skip", "error")


def evaluate_retrieval(
    embeddings: Any,
    labels: Any,
    domains: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    roles: Sequence[str] | None = None,
    *,
    unmatched_queries: UnmatchedPolicy = "skip",
    backend: Backend = "auto",
    device: torch.device | str | None = None,
    block_size: int | None = None,
) -> dict[str, Any]:
    """Retrieval metrics of a test set, in the shape of a row of the paper's Table 2.

    Args:
        embeddings: ``(N, D)`` torch tensor or array; L2-normalised here (cosine similarity, method.md section 7).
        labels: ``(N,)`` integer class labels; only equality within a dataset matters.
        domains: ``N`` dataset names; when given, labels are made unique per ``(dataset, label)`` and the result gains
            ``per_dataset`` and ``harmonic``. ``None``: one dataset, only ``unified``.
        ks: the ``k`` of Recall@k; each must fit in every gallery a query searches (else an error).
        roles: ``N`` strings from ``"both"``, ``"query"``, ``"gallery"`` (``None``: all ``"both"``, leave-one-out).
            Training rows (``"train"``) are refused.
        unmatched_queries: ``"skip"`` (default) or ``"error"`` for queries with no relevant gallery row.
        backend: nearest-neighbour backend, ``"auto"``, ``"torch"`` or ``"faiss"``; all give the same neighbours.
        device: where to search (default: where ``embeddings`` are; faiss searches on the CPU only).
        block_size: queries per search block (default: bounded memory, see :mod:`peft_puma.evaluation.knn`).

    Returns:
        ``{"unified": {...}, "per_dataset": {name: {...}}, "harmonic": {...}}`` (the last two only with ``domains``),
        each inner dict holding ``"recall@k"`` for every ``k``, ``"map@r"`` and ``"r_precision"`` as fractions in
        [0, 1], plus ``"num_queries"`` (queries scored), ``"num_unmatched_queries"`` and ``"num_gallery"``;
        ``harmonic`` holds the metrics and ``"num_datasets"``. Dataset order is the order of first appearance.
    """
    vectors = as_embeddings(embeddings, device)
    num_rows = vectors.shape[0]
    class_labels = as_labels(labels, num_rows)
    dataset_names = as_strings(domains, num_rows, "domains", default="")
    row_roles = as_roles(roles, num_rows)
    ks = as_ks(ks)
    if unmatched_queries not in UNMATCHED_POLICIES:
        raise InvalidInputError(
            f"unmatched_queries must be one of {', '.join(map(repr, UNMATCHED_POLICIES))}; got {unmatched_queries!r}."
        )
    unique_labels = torch.from_numpy(global_labels(class_labels, dataset_names)).to(vectors.device)
    is_query = torch.from_numpy(row_roles != "gallery").to(vectors.device)
    in_gallery = torch.from_numpy(row_roles != "query").to(vectors.device)
    search = _Search(vectors, unique_labels, ks, unmatched_queries, backend, block_size)

    result: dict[str, Any] = {"unified": search.score(is_query, in_gallery, scope="the unified gallery")}
    if domains is None:
        return result
    names = np.asarray(dataset_names, dtype=object)
    per_dataset = {}
    for name in dict.fromkeys(dataset_names):
        in_dataset = torch.from_numpy(names == name).to(vectors.device)
        per_dataset[name] = search.score(is_query & in_dataset, in_gallery & in_dataset, scope=f"dataset {name!r}")
    result["per_dataset"] = per_dataset
    result["harmonic"] = harmonic_means(per_dataset, metric_names(ks))
    return result


def metric_names(ks: Sequence[int]) -> list[str]:
    """The metric keys of a result dict, in table order: ``recall@k`` for each ``k``, ``map@r``, ``r_precision``."""
    return [f"recall@{k}" for k in ks] + ["map@r", "r_precision"]


def harmonic_means(per_dataset: dict[str, dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Harmonic mean over datasets of each named metric; 0 if any dataset scores 0 (the limit of the formula)."""
    result: dict[str, Any] = {}
    for name in names:
        values = [scores[name] for scores in per_dataset.values()]
        result[name] = 0.0 if min(values) == 0 else len(values) / sum(1.0 / v for v in values)
    result["num_datasets"] = len(per_dataset)
    return result


class _Search:
    """Scores one set of queries against one gallery, both given as row masks over the same normalised embeddings."""

    def __init__(
        self,
        vectors: torch.Tensor,
        labels: torch.Tensor,
        ks: tuple[int, ...],
        unmatched_queries: str,
        backend: Backend,
        block_size: int | None,
    ) -> None:
        self.vectors, self.labels, self.ks = vectors, labels, ks
        self.unmatched_queries, self.backend, self.block_size = unmatched_queries, backend, block_size

    def score(self, is_query: torch.Tensor, in_gallery: torch.Tensor, scope: str) -> dict[str, Any]:
        gallery_rows = torch.nonzero(in_gallery).squeeze(1)
        query_rows = torch.nonzero(is_query).squeeze(1)
        if query_rows.numel() == 0 or gallery_rows.numel() == 0:
            raise InvalidInputError(
                f"{scope} has {query_rows.numel()} query rows and {gallery_rows.numel()} gallery rows; it needs both "
                "(roles 'both' count as both)."
            )
        gallery_labels = self.labels[gallery_rows]
        query_labels = self.labels[query_rows]
        # Gallery position of each query itself (-1 for "query" rows): the query is never its own neighbour.
        position_in_gallery = torch.cumsum(in_gallery.long(), dim=0) - 1
        self_index = torch.where(in_gallery[query_rows], position_in_gallery[query_rows], -1)
        is_own_gallery_row = (self_index >= 0).long()
        num_relevant = torch.bincount(gallery_labels, minlength=int(self.labels.max()) + 1)[query_labels]
        num_relevant = num_relevant - is_own_gallery_row

        unmatched = num_relevant == 0
        num_unmatched = int(unmatched.sum())
        if num_unmatched and self.unmatched_queries == "error":
            raise InvalidInputError(
                f"{num_unmatched} queries of {scope} have no gallery row of their class (a class of size one, or a "
                f"query class absent from the gallery); pass unmatched_queries='skip' to leave them out."
            )
        if num_unmatched == query_rows.numel():
            raise InvalidInputError(f"No query of {scope} has a gallery row of its class; nothing can be scored.")
        keep = ~unmatched
        query_rows, query_labels = query_rows[keep], query_labels[keep]
        self_index, num_relevant = self_index[keep], num_relevant[keep]
        self._check_k_fits(gallery_rows.numel() - is_own_gallery_row[keep].max().item(), scope)

        sums = self._sum_metrics(query_rows, query_labels, gallery_rows, gallery_labels, self_index, num_relevant)
        scores = {name: value / query_rows.numel() for name, value in sums.items()}
        scores.update(
            num_queries=int(query_rows.numel()),
            num_unmatched_queries=num_unmatched,
            num_gallery=int(gallery_rows.numel()),
        )
        return scores

    def _check_k_fits(self, searchable: int, scope: str) -> None:
        if self.ks[-1] > searchable:
            raise InvalidInputError(
                f"k = {self.ks[-1]} exceeds the {searchable} gallery rows a query of {scope} can retrieve (the query "
                f"itself excluded); use ks no larger than {searchable}."
            )

    def _sum_metrics(
        self,
        query_rows: torch.Tensor,
        query_labels: torch.Tensor,
        gallery_rows: torch.Tensor,
        gallery_labels: torch.Tensor,
        self_index: torch.Tensor,
        num_relevant: torch.Tensor,
    ) -> dict[str, float]:
        """Sum of each per-query metric, one search block at a time (the blocks' neighbours are then dropped)."""
        # Each query needs its top max(k) for Recall@k and its top R for MAP@R and R-Precision.
        needed = num_relevant.clamp(min=self.ks[-1])
        blocks = iter_nearest_neighbours(
            self.vectors[query_rows],
            self.vectors[gallery_rows],
            needed,
            self_index=self_index,
            backend=self.backend,
            block_size=self.block_size,
        )
        sums = dict.fromkeys(metric_names(self.ks), 0.0)
        for block in blocks:
            rows = slice(block.start, block.start + block.indices.shape[0])
            matches = label_matches(query_labels[rows], block.indices, gallery_labels)
            for k, hits in recall_at_k(matches, self.ks).items():
                sums[f"recall@{k}"] += float(hits.sum())
            sums["map@r"] += float(map_at_r(matches, num_relevant[rows]).sum())
            sums["r_precision"] += float(r_precision(matches, num_relevant[rows]).sum())
        return sums
