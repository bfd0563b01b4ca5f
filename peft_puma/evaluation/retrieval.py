"""``evaluate_retrieval``: embeddings + labels + dataset names -> the paper's Table 2 row (docs/spec.md section 7).

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
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from peft_puma.errors import InvalidInputError
from peft_puma.evaluation.inputs import as_embeddings, as_ks, as_labels, as_roles, as_strings, global_labels
from peft_puma.evaluation.knn import Backend, iter_nearest_neighbours, nearest_neighbours
from peft_puma.evaluation.metrics import label_matches, map_at_r, r_precision, recall_at_k

UnmatchedPolicy = Literal["skip", "error"]
UNMATCHED_POLICIES: tuple[str, ...] = ("skip", "error")


class KTooLargeError(InvalidInputError):
    """A k of Recall@k larger than the smallest gallery a query searches: ``k``, that gallery's ``scope`` (``dataset
    'cub'``) and ``limit``, the gallery rows a query there can retrieve (itself excluded), the largest k accepted."""

    def __init__(self, k: int, limit: int, scope: str) -> None:
        self.k, self.limit, self.scope = k, limit, scope
        super().__init__(self.describe())

    def describe(self, option: str = "ks", ks: Sequence[int] = (), split: str | None = None) -> str:
        """The refusal in one line, naming the command's ``option`` (``eval_ks``, ``--eval_ks``) and the ``split``;
        with the ``ks`` given, the ones that fit."""
        where = f" in the {split} split" if split else ""
        fit = [k for k in ks if k <= self.limit]
        return (
            f"k = {self.k} exceeds the {self.limit} gallery rows a query of {self.scope}{where} can retrieve (the "
            f"smallest gallery; the query itself excluded); use {option} no larger than {self.limit}"
            + (f", e.g. {' '.join(map(str, fit)) if option.startswith('--') else fit}." if fit else ".")
        )


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
        embeddings: ``(N, D)`` torch tensor or array; L2-normalised here (cosine similarity, docs/spec.md section 7).
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
    search, unified, datasets = _plan(vectors, labels, domains, roles, ks, unmatched_queries, backend, block_size)
    if datasets is None:
        return {"unified": search.score(unified)}
    per_dataset = {name: search.score(task) for name, task in datasets.items()}
    return {
        "unified": search.score(unified),
        "per_dataset": per_dataset,
        "harmonic": harmonic_means(per_dataset, metric_names(search.ks)),
    }


def check_retrieval(
    labels: Any, domains: Any = None, roles: Any = None, ks: Sequence[int] = (1, 2, 4, 8), unmatched_queries="skip"
) -> None:
    """Raise the error :func:`evaluate_retrieval` would raise on these rows before any embedding exists (a k larger
    than the smallest gallery, :class:`KTooLargeError`; a dataset without queries): a run checks its scored splits
    before it trains."""
    num_rows = len(labels)
    _plan(torch.zeros(num_rows, 1), labels, domains, roles, ks, unmatched_queries, "auto", None)


def _plan(
    vectors: torch.Tensor,
    labels: Any,
    domains: Any,
    roles: Any,
    ks: Sequence[int],
    unmatched_queries: str,
    backend: Backend,
    block_size: int | None,
) -> tuple[_Search, _Task, dict[str, _Task] | None]:
    """Every search of the evaluation, validated: the unified one and one per dataset (``None`` without domains)."""
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
    unified = search.plan(is_query, in_gallery, scope="the unified gallery")
    datasets = None
    if domains is not None:
        names = np.asarray(dataset_names, dtype=object)
        datasets = {}
        for name in dict.fromkeys(dataset_names):
            in_dataset = torch.from_numpy(names == name).to(vectors.device)
            datasets[name] = search.plan(is_query & in_dataset, in_gallery & in_dataset, scope=f"dataset {name!r}")
    # k is checked against the smallest gallery of all, so the refusal names the one that limits it
    scopes = {"the unified gallery": unified, **{f"dataset {name!r}": task for name, task in (datasets or {}).items()}}
    scope, smallest = min(scopes.items(), key=lambda item: item[1].searchable)
    if ks[-1] > smallest.searchable:
        raise KTooLargeError(ks[-1], smallest.searchable, scope)
    return search, unified, datasets


def unified_top1_rows(embeddings: Any, labels: Any, domains: Any = None, roles: Any = None) -> tuple[Any, Any]:
    """Each query unified Recall@1 scores, and the row of its nearest neighbour in the unified gallery.

    Found by the same planning and search as :func:`evaluate_retrieval`'s unified view (the query never its own
    neighbour, exact ties by row order, queries without another gallery row of their class left out), so a diagnostic
    that asks *where* the misses land counts exactly the misses unified Recall@1 counts.

    Returns:
        ``(query_rows, neighbour_rows)``: two integer arrays of row indices into the inputs, one entry per query.
    """
    vectors = as_embeddings(embeddings)
    num_rows = vectors.shape[0]
    unique_labels = global_labels(as_labels(labels, num_rows), as_strings(domains, num_rows, "domains", default=""))
    row_roles = as_roles(roles, num_rows)
    search = _Search(vectors, torch.from_numpy(unique_labels).to(vectors.device), (1,), "skip", "auto", None)
    is_query = torch.from_numpy(row_roles != "gallery").to(vectors.device)
    in_gallery = torch.from_numpy(row_roles != "query").to(vectors.device)
    task = search.plan(is_query, in_gallery, scope="the unified gallery")
    _, top = nearest_neighbours(vectors[task.query_rows], vectors[task.gallery_rows], 1, self_index=task.self_index)
    return task.query_rows.cpu().numpy(), task.gallery_rows[top[:, 0]].cpu().numpy()


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


@dataclass(frozen=True)
class _Task:
    """One validated search: queries (all with ``R >= 1``) against a gallery, given as rows of the input."""

    query_rows: torch.Tensor
    gallery_rows: torch.Tensor
    self_index: torch.Tensor  # gallery position of each query itself, -1 if it is not in the gallery
    num_relevant: torch.Tensor  # R of each query
    num_unmatched: int
    searchable: int  # gallery rows a query can retrieve (itself excluded): the largest k this search scores


class _Search:
    """Plans and scores query-set-against-gallery searches over the same normalised embeddings.

    Every search is planned (and its input validated) before any is run, so a mistake in the last dataset does not
    surface after minutes of unified search.
    """

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

    def plan(self, is_query: torch.Tensor, in_gallery: torch.Tensor, scope: str) -> _Task:
        """The search of the ``is_query`` rows against the ``in_gallery`` rows; ``scope`` names it in errors."""
        gallery_rows = torch.nonzero(in_gallery).squeeze(1)
        query_rows = torch.nonzero(is_query).squeeze(1)
        if query_rows.numel() == 0 or gallery_rows.numel() == 0:
            raise InvalidInputError(
                f"{scope} has {query_rows.numel()} query rows and {gallery_rows.numel()} gallery rows; it needs both "
                "(roles 'both' count as both)."
            )
        # Gallery position of each query itself (-1 for "query" rows): the query is never its own neighbour.
        position_in_gallery = torch.cumsum(in_gallery.long(), dim=0) - 1
        self_index = torch.where(in_gallery[query_rows], position_in_gallery[query_rows], -1)
        class_sizes = torch.bincount(self.labels[gallery_rows], minlength=int(self.labels.max()) + 1)
        num_relevant = class_sizes[self.labels[query_rows]] - (self_index >= 0).long()

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
        searchable = gallery_rows.numel() - int(bool((self_index[keep] >= 0).any()))
        return _Task(query_rows[keep], gallery_rows, self_index[keep], num_relevant[keep], num_unmatched, searchable)

    def score(self, task: _Task) -> dict[str, Any]:
        """Mean of each metric over the task's queries, plus the counts."""
        sums = self._sum_metrics(task)
        num_queries = int(task.query_rows.numel())
        scores: dict[str, Any] = {name: value / num_queries for name, value in sums.items()}
        scores.update(
            num_queries=num_queries,
            num_unmatched_queries=task.num_unmatched,
            num_gallery=int(task.gallery_rows.numel()),
        )
        return scores

    def _sum_metrics(self, task: _Task) -> dict[str, float]:
        """Sum of each per-query metric, one search block at a time (the blocks' neighbours are then dropped)."""
        query_labels, gallery_labels = self.labels[task.query_rows], self.labels[task.gallery_rows]
        # Each query needs its top max(k) for Recall@k and its top R for MAP@R and R-Precision.
        needed = task.num_relevant.clamp(min=self.ks[-1])
        blocks = iter_nearest_neighbours(
            self.vectors[task.query_rows],
            self.vectors[task.gallery_rows],
            needed,
            self_index=task.self_index,
            backend=self.backend,
            block_size=self.block_size,
        )
        sums = dict.fromkeys(metric_names(self.ks), 0.0)
        for block in blocks:
            rows = slice(block.start, block.start + block.indices.shape[0])
            num_relevant = task.num_relevant[rows]
            matches = label_matches(query_labels[rows], block.indices, gallery_labels)
            for k, hits in recall_at_k(matches, self.ks).items():
                sums[f"recall@{k}"] += float(hits.sum())
            sums["map@r"] += float(map_at_r(matches, num_relevant).sum())
            sums["r_precision"] += float(r_precision(matches, num_relevant).sum())
        return sums
