"""A faiss index over L2-normalised embeddings, searched by inner product (= cosine), exact or approximate.

Three kinds (docs/search.md, "Index options", has their measured build time, memory and recall):

- ``"flat"``: ``faiss.IndexFlatIP``, exact. Its search *is* the evaluation's exact kNN
  (:func:`peft_puma.evaluation.nearest_neighbours`): the same neighbours in the same order, ties broken by gallery row.
- ``"hnsw"``: ``faiss.IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``: a graph of ``hnsw_m`` links per vector, built with
  a candidate list of ``ef_construction`` and searched with one of ``ef_search`` (larger: better recall, slower).
- ``"ivf"``: ``faiss.IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``: the vectors are split into ``nlist`` k-means cells
  (trained on a seeded sample of at most 64 vectors per cell) and a query scans its ``nprobe`` nearest cells.
  ``nlist`` defaults to ``4 sqrt(N)`` (at most ``N / 39``, the fewest training vectors per cell faiss accepts without
  a warning) and ``nprobe`` to ``nlist / 64`` (at least 16 cells, or all of them when there are fewer).

Approximate results are ordered like exact ones (similarity descending, then gallery row ascending) and may hold fewer
than ``k`` real neighbours when an IVF search visits too few vectors: the missing places have row ``-1`` and score
``-inf``. Queries and gallery are L2-normalised with the evaluation's own input check
(:func:`peft_puma.evaluation.inputs.as_embeddings`), so both sides compare cosines whatever they are given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InvalidConfigError, InvalidInputError
from ..evaluation.inputs import as_embeddings
from ..evaluation.knn import nearest_neighbours

INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf")
HNSW_M = 32  # links per vector: faiss's usual choice for 100-d-ish vectors; memory 2 x 32 x 4 bytes per vector
HNSW_EF_CONSTRUCTION = 100  # candidate list while building (faiss default 40): better graph, build time grows with it
HNSW_EF_SEARCH = 128  # candidate list while searching (faiss default 16); docs/search.md has the recall it gives
IVF_CELLS_PER_ROOT = 4  # nlist = 4 sqrt(N), the low end of faiss's guideline (4-16 sqrt(N))
IVF_MIN_TRAINING_PER_CELL = 39  # faiss warns below 39 training vectors per cell
IVF_MAX_TRAINING_PER_CELL = 64  # k-means sample: 64 vectors per cell (faiss default 256) keeps training minutes short
IVF_PROBE_FRACTION = 64  # nprobe = nlist / 64 (recall@10 0.98 at 1M embedding-like vectors, docs/search.md) ...
IVF_MIN_PROBES = 16  # ... but at least 16 cells: small indexes have few, coarse cells


def require_faiss() -> Any:
    """The faiss module, or an ``InvalidConfigError`` saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise InvalidConfigError(
            "Image search needs faiss: pip install 'peft_puma[faiss]' (or pip install faiss-cpu)."
        ) from None
    return faiss


def default_nlist(num_vectors: int) -> int:
    """IVF cells for ``num_vectors``: ``4 sqrt(N)``, but at least 1 and at most ``N / 39``."""
    return max(1, min(round(IVF_CELLS_PER_ROOT * math.sqrt(num_vectors)), num_vectors // IVF_MIN_TRAINING_PER_CELL))


def default_nprobe(nlist: int) -> int:
    """IVF cells a query scans: ``nlist / 64``, but at least 16 (or every cell, when there are fewer)."""
    return max(round(nlist / IVF_PROBE_FRACTION), min(nlist, IVF_MIN_PROBES))


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfigError(f"{name} must be a positive integer; got {value!r}.")
    return value


def index_params(
    index_type: str,
    num_vectors: int,
    *,
    hnsw_m: int | None = None,
    ef_construction: int | None = None,
    ef_search: int | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
) -> dict[str, int]:
    """The complete parameters of an index of ``index_type`` over ``num_vectors`` (``None``: the defaults above).

    A parameter of another kind of index is refused, so that a typo on the command line does not pass unnoticed.
    """
    if index_type not in INDEX_TYPES:
        raise InvalidConfigError(f"Unknown index type {index_type!r}; accepted: {', '.join(INDEX_TYPES)}.")
    given = {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
    given.update(nlist=nlist, nprobe=nprobe)
    own = {"flat": (), "hnsw": ("hnsw_m", "ef_construction", "ef_search"), "ivf": ("nlist", "nprobe")}[index_type]
    foreign = [name for name, value in given.items() if value is not None and name not in own]
    if foreign:
        raise InvalidConfigError(f"{', '.join(foreign)} do(es) not apply to a {index_type!r} index.")
    if index_type == "hnsw":
        return {
            "hnsw_m": _positive("hnsw_m", _given(hnsw_m, HNSW_M)),
            "ef_construction": _positive("ef_construction", _given(ef_construction, HNSW_EF_CONSTRUCTION)),
            "ef_search": _positive("ef_search", _given(ef_search, HNSW_EF_SEARCH)),
        }
    if index_type == "ivf":
        cells = _positive("nlist", _given(nlist, default_nlist(num_vectors)))
        if cells > num_vectors:
            raise InvalidConfigError(f"nlist = {cells} exceeds the {num_vectors} vectors to index.")
        return {"nlist": cells, "nprobe": min(cells, _positive("nprobe", _given(nprobe, default_nprobe(cells))))}
    return {}


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


@dataclass
class SearchIndex:
    """A built or loaded faiss index, its kind and its parameters (those of :func:`index_params`)."""

    faiss_index: Any
    index_type: str
    params: dict[str, int] = field(default_factory=dict)

    @property
    def num_vectors(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.faiss_index.d)

    def vectors(self) -> torch.Tensor:
        """``(N, D)`` view (no copy) of a flat index's vectors; valid while this object lives."""
        if self.index_type != "flat":
            raise InvalidInputError(f"Only a flat index keeps its vectors in order; this one is {self.index_type!r}.")
        faiss = require_faiss()
        count = self.num_vectors * self.dimension
        array = faiss.rev_swig_ptr(self.faiss_index.get_xb(), count).reshape(self.num_vectors, self.dimension)
        return torch.from_numpy(array)

    def search(
        self,
        queries: Any,
        k: int,
        *,
        exclude: Any = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores, rows)``, each ``(Q, k)``: the ``k`` gallery rows nearest each query, best first.

        ``exclude``: ``(Q,)`` gallery row of each query itself, or -1; that row is never returned (leave-one-out, as
        the evaluation does, docs/evaluation.md). ``ef_search`` / ``nprobe`` override the index's own for this call.
        """
        vectors = as_embeddings(queries, "cpu")
        if vectors.shape[1] != self.dimension:
            raise InvalidInputError(
                f"Queries have {vectors.shape[1]} dimensions; the index holds {self.dimension}-dimensional vectors."
            )
        self_rows = _exclusions(exclude, vectors.shape[0], self.num_vectors)
        searchable = self.num_vectors - int(bool((self_rows >= 0).any()))
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= searchable:
            raise InvalidInputError(
                f"k must lie in [1, {searchable}] (the indexed rows a query can retrieve); got {k!r}."
            )
        params = self.search_parameters(ef_search=ef_search, nprobe=nprobe)
        if self.index_type == "flat":
            return nearest_neighbours(vectors, self.vectors(), k, self_index=self_rows, backend="auto")
        return self._approximate(vectors, k, self_rows, params)

    def search_parameters(self, *, ef_search: int | None = None, nprobe: int | None = None) -> Any:
        """faiss's search parameters of this index with the given overrides (``None`` for a flat index); an option
        of another kind of index is an ``InvalidConfigError``."""
        given = {"ef_search": ef_search, "nprobe": nprobe}
        own = {"flat": None, "hnsw": "ef_search", "ivf": "nprobe"}[self.index_type]
        foreign = [name for name, value in given.items() if value is not None and name != own]
        if foreign:
            raise InvalidConfigError(f"{', '.join(foreign)} do(es) not apply to a {self.index_type!r} index.")
        if self.index_type == "flat":
            return None
        faiss = require_faiss()
        if self.index_type == "hnsw":
            return faiss.SearchParametersHNSW(
                efSearch=_positive("ef_search", _given(ef_search, self.params["ef_search"]))
            )
        probes = _positive("nprobe", _given(nprobe, self.params["nprobe"]))
        return faiss.SearchParametersIVF(nprobe=min(probes, self.params["nlist"]))

    def _approximate(
        self, vectors: torch.Tensor, k: int, self_rows: torch.Tensor, params: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        excluding = int(bool((self_rows >= 0).any()))
        wanted = min(k + excluding, self.num_vectors)  # one more where the query itself may come back
        # faiss.contrib.torch_utils (imported by pytorch-metric-learning's inference utilities) replaces every
        # index's search with a torch-aware one without `params`; the numpy search it keeps as search_numpy has them.
        search = getattr(self.faiss_index, "search_numpy", self.faiss_index.search)
        distances, labels = search(vectors.numpy(), wanted, params=params)
        scores, rows = torch.from_numpy(distances), torch.from_numpy(labels)
        dropped = (rows < 0) | (rows == self_rows.unsqueeze(1))
        scores = scores.masked_fill(dropped, float("-inf"))
        rows = rows.masked_fill(dropped, -1)
        scores, rows = canonical_order(scores, rows)
        return scores[:, :k].contiguous(), rows[:, :k].contiguous()


def canonical_order(scores: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each query's results by similarity (descending), equal similarities by gallery row (ascending), and
    missing results (row -1, score -inf) last: the order of the evaluation's exact kNN (docs/evaluation.md)."""
    missing_last = torch.where(rows < 0, torch.iinfo(torch.int64).max, rows)
    by_row = torch.argsort(missing_last, dim=1, stable=True)
    scores, rows = scores.gather(1, by_row), rows.gather(1, by_row)
    by_score = torch.argsort(scores, dim=1, descending=True, stable=True)
    return scores.gather(1, by_score), rows.gather(1, by_score)


def _exclusions(exclude: Any, num_queries: int, num_vectors: int) -> torch.Tensor:
    if exclude is None:
        return torch.full((num_queries,), -1, dtype=torch.long)
    rows = torch.as_tensor(np.asarray(exclude), dtype=torch.long).reshape(-1)
    if rows.shape[0] != num_queries or bool(((rows < -1) | (rows >= num_vectors)).any()):
        raise InvalidInputError(
            f"exclude must give one gallery row in [-1, {num_vectors - 1}] per query ({num_queries}); got {exclude!r}."
        )
    return rows


def build_index(embeddings: Any, index_type: str = "flat", *, seed: int = 0, **options: int | None) -> SearchIndex:
    """A :class:`SearchIndex` of ``index_type`` over ``embeddings`` (``(N, D)``, L2-normalised here).

    ``options``: ``hnsw_m``, ``ef_construction``, ``ef_search`` (HNSW) or ``nlist``, ``nprobe`` (IVF); see
    :func:`index_params`. ``seed`` seeds the IVF k-means (the other kinds are deterministic given the row order).
    """
    faiss = require_faiss()
    vectors = as_embeddings(embeddings, "cpu").numpy()
    num_vectors, dimension = vectors.shape
    params = index_params(index_type, num_vectors, **options)
    if index_type == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(seed)
        index.cp.max_points_per_centroid = IVF_MAX_TRAINING_PER_CELL
        index.nprobe = params["nprobe"]
        index.train(vectors)
    index.add(vectors)
    return SearchIndex(index, index_type, params)


def write_index(index: SearchIndex, path: str) -> None:
    """Save the faiss index to ``path`` (faiss's own format)."""
    require_faiss().write_index(index.faiss_index, path)


_FAISS_CLASSES = {"flat": "IndexFlatIP", "hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}


def read_index(path: str, index_type: str, params: dict[str, int]) -> SearchIndex:
    """Load a faiss index written by :func:`write_index`; it must be the kind the manifest says."""
    faiss = require_faiss()
    try:
        index = faiss.read_index(path)
    except RuntimeError as error:  # faiss raises RuntimeError for unreadable or damaged files
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise InvalidInputError(f"Cannot read the faiss index {path!r} ({first}); build the index again.") from None
    found = type(index).__name__
    if index_type not in _FAISS_CLASSES or found != _FAISS_CLASSES[index_type]:
        raise InvalidInputError(
            f"{path!r} holds a faiss {found}, not the {index_type!r} index its manifest records; build it again."
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise InvalidInputError(f"{path!r} does not search by inner product; build the index again.")
    return SearchIndex(index, index_type, dict(params))
