"""The Python API of the index (``peft_puma.search.index``): exact search is the evaluation's kNN, approximate indexes
find the same neighbours on small data, parameters and mistakes (docs/search.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from peft_puma.errors import InvalidConfigError, InvalidInputError
from peft_puma.evaluation import nearest_neighbours
from peft_puma.inference.embeddings_file import load_embeddings
from peft_puma.search import build_index, open_index_folder, read_index, write_index
from peft_puma.search.index import default_nlist, default_nprobe, index_params


def _vectors(rows: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)


def _with_ties(rows: int = 60) -> torch.Tensor:
    """Random vectors where every fifth row repeats an earlier one: exact ties the order must break by row."""
    vectors = _vectors(rows)
    vectors[5::5] = vectors[0]
    return vectors


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_exact_search_is_the_evaluation_knn_leave_one_out(backend):
    vectors = _with_ties()
    rows = torch.arange(len(vectors))
    scores, found = build_index(vectors).search(vectors, 8, exclude=rows)
    expected_scores, expected = nearest_neighbours(vectors, vectors, 8, self_index=rows, backend=backend)
    assert torch.equal(found, expected)
    torch.testing.assert_close(scores, expected_scores)
    assert not bool((found == rows.unsqueeze(1)).any())  # a query never finds itself
    assert found[0].tolist() == list(range(5, 45, 5))  # row 0's equal twins, in row order
    assert found[5].tolist() == [0, *range(10, 45, 5)]


def test_exact_search_over_a_dataset_index_equals_the_knn_of_its_embeddings(tiny, test_index):
    """The index of the tiny test split (built by the command line) against the evaluation's kNN of the embeddings
    ``python -m peft_puma.embed`` computes for the same split."""
    from peft_puma import embed

    output = os.path.join(tiny["root"], "test_embeddings.safetensors")
    argv = ["--adapter", tiny["run"], "--dataset", tiny["dataset"], "--split", "test", "--output", output]
    assert embed.main(argv) == 0
    embeddings = load_embeddings(output)["embeddings"]
    index, manifest = open_index_folder(test_index)
    torch.testing.assert_close(index.vectors(), torch.nn.functional.normalize(embeddings, dim=1))
    rows = torch.arange(len(embeddings))
    scores, found = index.search(embeddings, 5, exclude=rows)
    expected_scores, expected = nearest_neighbours(embeddings, embeddings, 5, self_index=rows, backend="torch")
    assert torch.equal(found, expected)
    torch.testing.assert_close(scores, expected_scores)
    assert manifest["gallery"]["labels"] == load_embeddings(output)["labels"].tolist()


def test_without_exclusion_every_vector_finds_itself_first():
    vectors = _vectors(40)
    scores, found = build_index(vectors).search(vectors, 3)
    assert found[:, 0].tolist() == list(range(40))
    torch.testing.assert_close(scores[:, 0], torch.ones(40))


@pytest.mark.parametrize("index_type, options", [("hnsw", {"ef_search": 200}), ("ivf", {"nprobe": 1000})])
def test_approximate_indexes_find_the_exact_neighbours_of_small_data(index_type, options):
    gallery, queries = _vectors(500, seed=1), _vectors(50, seed=2)
    exact_scores, exact = build_index(gallery).search(queries, 10)
    index = build_index(gallery, index_type)
    scores, found = index.search(queries, 10, **options)
    assert torch.equal(found, exact)  # ivf with every cell scanned is exhaustive; hnsw at 500 vectors as good
    torch.testing.assert_close(scores, exact_scores)
    _, default = index.search(queries, 10)
    overlap = (default.unsqueeze(2) == exact.unsqueeze(1)).any(dim=2).float().mean()
    assert overlap > 0.5  # the defaults are a trade-off: docs/search.md measures them


def test_approximate_search_leaves_out_the_query_itself():
    vectors = _vectors(200)
    rows = torch.arange(200)
    for index_type in ("hnsw", "ivf"):
        _, found = build_index(vectors, index_type).search(vectors, 5, exclude=rows, ef_search=None)
        assert not bool((found == rows.unsqueeze(1)).any())


def test_index_parameters_defaults_and_refusals():
    assert index_params("flat", 10) == {}
    assert index_params("hnsw", 10) == {"hnsw_m": 32, "ef_construction": 100, "ef_search": 128}
    assert default_nlist(1_000_000) == 4000 and default_nprobe(4000) == 62
    assert default_nlist(10_000) == 256 and default_nprobe(256) == 16  # at least 16 cells ...
    assert default_nlist(100) == 2 and default_nprobe(2) == 2 and default_nlist(5) == 1  # ... or all of them
    assert index_params("ivf", 1_000_000) == {"nlist": 4000, "nprobe": 62}
    assert index_params("ivf", 1_000_000, nprobe=8000) == {"nlist": 4000, "nprobe": 4000}
    with pytest.raises(InvalidConfigError, match="nlist do"):
        index_params("hnsw", 10, nlist=4)
    with pytest.raises(InvalidConfigError, match="ef_search must be a positive integer"):
        index_params("hnsw", 10, ef_search=0)
    with pytest.raises(InvalidConfigError, match="exceeds the 10 vectors"):
        index_params("ivf", 10, nlist=11)
    with pytest.raises(InvalidConfigError, match="Unknown index type 'annoy'"):
        build_index(_vectors(4), "annoy")


def test_search_mistakes_are_one_line_errors():
    index = build_index(_vectors(6))
    with pytest.raises(InvalidInputError, match=r"k must lie in \[1, 6\]"):
        index.search(_vectors(2), 0)
    with pytest.raises(InvalidInputError, match=r"k must lie in \[1, 5\]"):
        index.search(_vectors(2), 6, exclude=[0, 1])
    with pytest.raises(InvalidInputError, match="Queries have 8 dimensions"):
        index.search(_vectors(2, dim=8), 1)
    with pytest.raises(InvalidInputError, match="exclude must give one gallery row"):
        index.search(_vectors(2), 1, exclude=[0])
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        build_index(np.full((3, 4), np.nan))


def test_an_index_file_round_trips_and_must_be_the_recorded_kind(tmp_path):
    vectors = _vectors(300)
    for index_type in ("flat", "hnsw", "ivf"):
        index = build_index(vectors, index_type)
        path = str(tmp_path / f"{index_type}.faiss")
        write_index(index, path)
        again = read_index(path, index_type, index.params)
        assert torch.equal(again.search(vectors[:7], 4)[1], index.search(vectors[:7], 4)[1])
    with pytest.raises(InvalidInputError, match="not the 'flat' index its manifest records"):
        read_index(str(tmp_path / "hnsw.faiss"), "flat", {})
    (tmp_path / "broken.faiss").write_bytes(b"not an index")
    with pytest.raises(InvalidInputError, match="Cannot read the faiss index"):
        read_index(str(tmp_path / "broken.faiss"), "flat", {})


def test_approximate_search_survives_faiss_torch_utils_patching_every_index():
    """pytorch-metric-learning imports faiss.contrib.torch_utils, which swaps every index's search for a version
    without search parameters; an approximate search must still honour ef_search / nprobe after that."""
    import faiss.contrib.torch_utils  # noqa: F401  (the patch itself is the point)

    gallery, queries = _vectors(300, seed=4), _vectors(20, seed=5)
    _, exact = build_index(gallery).search(queries, 5)
    for index_type, options in (("hnsw", {"ef_search": 300}), ("ivf", {"nprobe": 1000})):
        _, found = build_index(gallery, index_type).search(queries, 5, **options)
        assert torch.equal(found, exact), index_type
