"""Exact nearest-neighbour search by inner product, chunked so that no full query x gallery matrix is ever built.

docs/spec.md section 7 asks for *exact* nearest neighbours under cosine similarity. The callers L2-normalise first,
so the inner product searched here is the cosine. Two backends give the same neighbours:

- ``"torch"``: one block of queries at a time, ``block @ gallery.T`` then ``topk``; memory is one block of scores.
- ``"faiss"``: ``faiss.IndexFlatIP`` (exact, brute force) over blocks of queries; used by ``"auto"`` when faiss is
  installed and the data is on the CPU, because it was the faster of the two on CPUs (see docs/evaluation.md).

Ranking is a total order, so results do not depend on the backend or the block size: neighbours are sorted by
similarity (descending) and equal similarities by gallery position (ascending). Backends return the top ``k`` in an
arbitrary order among ties, so every block asks for one neighbour more than needed; a row whose ``k``-th and
``(k+1)``-th similarities are equal has a tie straddling the cut, and only such rows are re-ranked exactly from their
full row of similarities.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from peft_puma.errors import InvalidInputError

Backend = Literal["auto", "torch", "faiss"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "faiss")

# One block of torch scores is at most this many float32 values (128 MB): the memory bound of the torch backend.
# Measured on 2 cores at G = 60k: 256-row blocks ran faster than 1024-row blocks (matmul and topk both).
_TORCH_BLOCK_SCORES = 32 * 1024 * 1024
# faiss blocks its own matrix products internally; our query blocks only bound the (block x k) result arrays.
_FAISS_BLOCK_QUERIES = 8192


@dataclass(frozen=True)
class NeighbourBlock:
    """The ``k`` nearest gallery rows of the queries ``start .. start + len(indices)``, best first."""

    start: int
    scores: torch.Tensor  # (block, k) float32 similarities, descending
    indices: torch.Tensor  # (block, k) int64 gallery positions


def faiss_available() -> bool:
    """Whether the optional faiss package is importable (checked without importing it)."""
    return importlib.util.find_spec("faiss") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn ``"auto"`` into a concrete backend: faiss on the CPU when installed, torch otherwise."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"Unknown nearest-neighbour backend {backend!r}; accepted: {', '.join(BACKENDS)}.")
    if backend == "auto":
        return "faiss" if device.type == "cpu" and faiss_available() else "torch"
    if backend == "faiss":
        if not faiss_available():
            raise InvalidInputError("backend='faiss' needs the faiss package (pip install faiss-cpu).")
        if device.type != "cpu":
            raise InvalidInputError(f"backend='faiss' searches CPU tensors only; the embeddings are on {device}.")
    return backend


def iter_nearest_neighbours(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int | torch.Tensor,
    *,
    self_index: torch.Tensor | None = None,
    backend: Backend = "auto",
    block_size: int | None = None,
) -> Iterator[NeighbourBlock]:
    """Yield the exact top-``k`` gallery neighbours of consecutive blocks of queries, by inner product.

    Args:
        queries: ``(Q, D)`` float32, L2-normalised (then the inner product is the cosine).
        gallery: ``(G, D)`` float32, L2-normalised, same device as ``queries``.
        k: neighbours per query; either one int, or a ``(Q,)`` tensor of per-query needs, in which case every block
            gets the largest need of its own queries (MAP@R needs ``R`` neighbours, and ``R`` varies by class).
        self_index: ``(Q,)`` int64 gallery position of each query itself, or -1; a query never gets itself as a
            neighbour (leave-one-out, docs/spec.md section 7).
        backend: ``"torch"``, ``"faiss"`` or ``"auto"``.
        block_size: queries per block; by default chosen so that one block of scores stays near 128 MB.

    ``k`` may not exceed the gallery (``G``, or ``G - 1`` when some query is in it): an ``InvalidInputError``.
    """
    num_queries, num_gallery = queries.shape[0], gallery.shape[0]
    if self_index is None:
        self_index = torch.full((num_queries,), -1, dtype=torch.long, device=queries.device)
    _check_k(k, num_gallery - int(bool((self_index >= 0).any())))
    concrete = resolve_backend(backend, queries.device)
    if block_size is None:
        block_size = _FAISS_BLOCK_QUERIES if concrete == "faiss" else max(1, _TORCH_BLOCK_SCORES // max(num_gallery, 1))
    index = _faiss_index(gallery) if concrete == "faiss" else None
    for start in range(0, num_queries, block_size):
        stop = min(start + block_size, num_queries)
        block_k = int(k[start:stop].max()) if isinstance(k, torch.Tensor) else int(k)
        block_self = self_index[start:stop]
        if index is not None:
            scores, indices = _faiss_search(index, queries[start:stop], gallery, block_k, block_self)
        else:
            scores, indices = _torch_search(queries[start:stop], gallery, block_k, block_self)
        yield NeighbourBlock(start=start, scores=scores, indices=indices)


def nearest_neighbours(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    *,
    self_index: torch.Tensor | None = None,
    backend: Backend = "auto",
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All blocks of :func:`iter_nearest_neighbours` at once: ``(scores, indices)``, each ``(Q, k)``."""
    blocks = list(
        iter_nearest_neighbours(queries, gallery, k, self_index=self_index, backend=backend, block_size=block_size)
    )
    if not blocks:
        empty = queries.new_empty((0, k))
        return empty, empty.long()
    return torch.cat([b.scores for b in blocks]), torch.cat([b.indices for b in blocks])


def _check_k(k: int | torch.Tensor, searchable: int) -> None:
    if isinstance(k, torch.Tensor):
        if k.numel() == 0:
            return
        smallest, largest = int(k.min()), int(k.max())
    else:
        smallest = largest = int(k)
    if smallest < 1 or largest > searchable:
        raise InvalidInputError(
            f"k must lie in [1, {searchable}] (the gallery rows a query can retrieve); got {smallest} to {largest}."
        )


def _torch_search(
    queries: torch.Tensor, gallery: torch.Tensor, k: int, self_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = queries @ gallery.T
    _mask_self(scores, self_index)
    available = gallery.shape[0]
    top = torch.topk(scores, min(k + 1, available), dim=1, largest=True, sorted=True)
    return _canonical_top_k(top.values, top.indices, k, lambda rows: scores[rows])


def _faiss_search(
    index: object, queries: torch.Tensor, gallery: torch.Tensor, k: int, self_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # One extra neighbour for the query itself (removed below) and one to see ties across the cut.
    wanted = min(k + 2, gallery.shape[0])
    distances, labels = index.search(queries.contiguous().numpy(), wanted)
    scores, indices = torch.from_numpy(distances), torch.from_numpy(labels)
    is_self = indices == self_index.unsqueeze(1)
    scores = scores.masked_fill(is_self, float("-inf"))
    # Stable sort: moves the query itself last without reordering the rest; keep k + 1 (self can only fall into the
    # extra column, where -inf never ties with a real similarity, because the caller ensures k <= G - 1 for it).
    scores, order = torch.sort(scores, dim=1, descending=True, stable=True)
    indices = indices.gather(1, order)
    scores, indices = scores[:, : k + 1], indices[:, : k + 1]

    def full_rows(rows: torch.Tensor) -> torch.Tensor:
        row_scores = queries[rows] @ gallery.T
        _mask_self(row_scores, self_index[rows])
        return row_scores

    return _canonical_top_k(scores, indices, k, full_rows)


def _mask_self(scores: torch.Tensor, self_index: torch.Tensor) -> None:
    """Give each query's own gallery row similarity -inf, in place, so that it is never a neighbour of itself."""
    rows = torch.nonzero(self_index >= 0).squeeze(1)
    scores[rows, self_index[rows]] = float("-inf")


def _canonical_top_k(
    scores: torch.Tensor,
    indices: torch.Tensor,
    k: int,
    full_rows: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``k`` candidates out of ``k + 1`` sorted ones, in the total order (similarity desc, gallery position asc).

    ``full_rows(rows)`` returns the complete similarity rows of the given block rows; it is called only for rows with a
    tie across the cut, where the candidates alone cannot tell which tied gallery rows come first.
    """
    straddling = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    if scores.shape[1] > k:
        straddling = scores[:, k] == scores[:, k - 1]
    scores, indices = scores[:, :k], indices[:, :k]
    # Order candidates by gallery position, then stable-sort by similarity: equal similarities keep position order.
    indices, by_position = torch.sort(indices, dim=1)
    scores = scores.gather(1, by_position)
    scores, by_score = torch.sort(scores, dim=1, descending=True, stable=True)
    indices = indices.gather(1, by_score)
    rows = torch.nonzero(straddling).squeeze(1)
    if rows.numel():
        exact_scores, exact_indices = torch.sort(full_rows(rows), dim=1, descending=True, stable=True)
        scores[rows], indices[rows] = exact_scores[:, :k], exact_indices[:, :k]
    return scores, indices


def _faiss_index(gallery: torch.Tensor) -> object:
    import faiss  # optional and heavy: imported only when this backend is used

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery.contiguous().numpy())
    return index
