"""Exact chunked nearest neighbours: same answer as a full stable sort, for every backend and block size.

The vectors have small integer entries, so every inner product is an exact integer in float32 whatever the summation
order: ties are real ties, and the expected order (similarity desc, gallery position asc) is unambiguous.
"""

from __future__ import annotations

import pytest
import torch

from peft_puma.errors import InvalidInputError
from peft_puma.evaluation import BACKENDS, iter_nearest_neighbours, nearest_neighbours
from peft_puma.evaluation.knn import faiss_available, resolve_backend

SEARCH_BACKENDS = ["torch"] + (["faiss"] if faiss_available() else [])


def integer_vectors(num: int, dim: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (num, dim), generator=generator).float()


def reference(queries: torch.Tensor, gallery: torch.Tensor, k: int, self_index: torch.Tensor | None):
    scores = queries @ gallery.T
    if self_index is not None:
        rows = torch.nonzero(self_index >= 0).squeeze(1)
        scores[rows, self_index[rows]] = float("-inf")
    values, indices = torch.sort(scores, dim=1, descending=True, stable=True)
    return values[:, :k], indices[:, :k]


@pytest.mark.parametrize("backend", SEARCH_BACKENDS)
@pytest.mark.parametrize("block_size", [1, 7, None])
@pytest.mark.parametrize("k", [1, 5, 39])
def test_neighbours_follow_similarity_then_gallery_position_with_many_ties(backend, block_size, k) -> None:
    gallery = integer_vectors(40)
    queries = integer_vectors(23, seed=1)
    scores, indices = nearest_neighbours(queries, gallery, k, backend=backend, block_size=block_size)
    expected_scores, expected_indices = reference(queries, gallery, k, None)
    assert torch.equal(indices, expected_indices)
    assert torch.equal(scores, expected_scores)


@pytest.mark.parametrize("backend", SEARCH_BACKENDS)
@pytest.mark.parametrize("block_size", [3, None])
def test_query_is_never_its_own_neighbour_even_among_exact_duplicates(backend, block_size) -> None:
    base = integer_vectors(10)
    gallery = torch.cat([base, base, base])  # every vector three times: its copies tie with itself
    self_index = torch.arange(30)
    k = 29  # the whole gallery but the query itself
    _, indices = nearest_neighbours(gallery, gallery, k, self_index=self_index, backend=backend, block_size=block_size)
    assert not (indices == self_index.unsqueeze(1)).any()
    assert torch.equal(indices, reference(gallery, gallery, k, self_index)[1])


@pytest.mark.parametrize("backend", SEARCH_BACKENDS)
def test_queries_outside_the_gallery_may_retrieve_the_whole_gallery(backend) -> None:
    gallery = integer_vectors(12)
    queries = integer_vectors(5, seed=3)
    self_index = torch.tensor([-1, 4, -1, -1, 0])
    scores, indices = nearest_neighbours(queries[:1], gallery, 12, backend=backend)
    assert torch.equal(indices, reference(queries[:1], gallery, 12, None)[1])
    _, indices = nearest_neighbours(queries, gallery, 11, self_index=self_index, backend=backend)
    assert torch.equal(indices, reference(queries, gallery, 11, self_index)[1])


def test_per_query_k_gives_each_block_the_largest_need_of_its_queries() -> None:
    gallery = integer_vectors(30)
    needs = torch.tensor([1, 2, 9, 1, 1, 3, 4])
    blocks = list(iter_nearest_neighbours(gallery[:7], gallery, needs, backend="torch", block_size=3))
    assert [(b.start, b.indices.shape[1]) for b in blocks] == [(0, 9), (3, 3), (6, 4)]


def test_k_beyond_the_searchable_gallery_is_refused() -> None:
    gallery = integer_vectors(6)
    with pytest.raises(InvalidInputError, match=r"k must lie in \[1, 6\]"):
        nearest_neighbours(gallery[:2], gallery, 7, backend="torch")
    with pytest.raises(InvalidInputError, match=r"k must lie in \[1, 5\]"):  # a query in the gallery excludes itself
        nearest_neighbours(gallery[:2], gallery, 6, self_index=torch.tensor([0, -1]), backend="torch")
    with pytest.raises(InvalidInputError, match="k must lie"):
        nearest_neighbours(gallery[:2], gallery, 0, backend="torch")


def test_backends_are_validated() -> None:
    assert BACKENDS == ("auto", "torch", "faiss")
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cpu")) == ("faiss" if faiss_available() else "torch")
    with pytest.raises(InvalidInputError, match="Unknown nearest-neighbour backend"):
        resolve_backend("annoy", torch.device("cpu"))
