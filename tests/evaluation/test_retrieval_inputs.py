"""Bad input to evaluate_retrieval is an InvalidInputError that says what was wrong, before any search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peft_puma.errors import InvalidInputError
from peft_puma.evaluation import evaluate_retrieval

EMBEDDINGS = np.eye(6, dtype=np.float32)[[0, 0, 1, 1, 2, 2]]
LABELS = [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [0, 0, 1]}, "labels has 3 entries but embeddings have 6 rows"),
        ({"domains": ["a"] * 5}, "domains has 5 entries"),
        ({"roles": ["both"] * 7}, "roles has 7 entries"),
        ({"labels": [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]}, "labels must be integers"),
        ({"labels": [[0, 0, 1, 1, 2, 2]]}, "labels must be 1-D"),
        ({"domains": "cub"}, "single string"),
        ({"domains": [1, 1, 1, 2, 2, 2]}, "domains must be strings"),
    ],
)
def test_mismatched_or_mistyped_row_data_is_refused(kwargs: dict, match: str) -> None:
    arguments = {"embeddings": EMBEDDINGS, "labels": LABELS, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        evaluate_retrieval(**arguments, ks=(1,))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinite_embeddings_are_refused_naming_the_row(bad: float) -> None:
    embeddings = EMBEDDINGS.copy()
    embeddings[3, 1] = bad
    with pytest.raises(InvalidInputError, match="NaN or infinite values in 1 row.*row 3"):
        evaluate_retrieval(embeddings, LABELS, ks=(1,))


def test_all_zero_embedding_is_refused_because_its_cosine_is_undefined() -> None:
    embeddings = EMBEDDINGS.copy()
    embeddings[2] = 0.0
    with pytest.raises(InvalidInputError, match="all zeros.*row 2"):
        evaluate_retrieval(embeddings, LABELS, ks=(1,))


@pytest.mark.parametrize("embeddings", [np.zeros(6), np.zeros((0, 4)), np.zeros((2, 3, 4))])
def test_embeddings_must_be_a_non_empty_matrix(embeddings: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="embeddings"):
        evaluate_retrieval(embeddings, list(range(len(embeddings))), ks=(1,))


def test_training_rows_are_refused_with_the_accepted_roles() -> None:
    roles = ["both"] * 5 + ["train"]
    with pytest.raises(InvalidInputError, match="'train' \\(1 rows\\).*'both', 'query', 'gallery'"):
        evaluate_retrieval(EMBEDDINGS, LABELS, roles=roles, ks=(1,))
    with pytest.raises(InvalidInputError, match="Unknown roles \\['test'\\]"):
        evaluate_retrieval(EMBEDDINGS, LABELS, roles=["both"] * 5 + ["test"], ks=(1,))


def test_k_larger_than_the_leave_one_out_gallery_is_refused() -> None:
    assert evaluate_retrieval(EMBEDDINGS, LABELS, ks=(5,))["unified"]["recall@5"] == 1.0  # 6 rows, 5 besides self
    with pytest.raises(InvalidInputError, match="k = 6 exceeds the 5 gallery rows"):
        evaluate_retrieval(EMBEDDINGS, LABELS, ks=(1, 6))


def test_k_larger_than_one_datasets_gallery_is_refused_before_any_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def search_not_allowed(*args, **kwargs):
        raise AssertionError("a search ran before every search was validated")

    monkeypatch.setattr("peft_puma.evaluation.retrieval.iter_nearest_neighbours", search_not_allowed)
    domains = ["cub", "cub", "cars", "cars", "cars", "cars"]
    with pytest.raises(InvalidInputError, match="dataset 'cub'"):
        evaluate_retrieval(EMBEDDINGS, LABELS, domains, ks=(1, 2))


def test_a_separate_query_set_may_use_the_whole_gallery() -> None:
    roles = ["query", "gallery", "query", "gallery", "gallery", "gallery"]
    assert evaluate_retrieval(EMBEDDINGS, LABELS, roles=roles, ks=(4,))["unified"]["recall@4"] == 1.0
    with pytest.raises(InvalidInputError, match="k = 5 exceeds the 4 gallery rows"):
        evaluate_retrieval(EMBEDDINGS, LABELS, roles=roles, ks=(5,))


@pytest.mark.parametrize("ks", [(), (0,), (1, -2), (1.5,), (True,)])
def test_ks_must_be_positive_integers(ks: tuple) -> None:
    with pytest.raises(InvalidInputError, match="ks must be"):
        evaluate_retrieval(EMBEDDINGS, LABELS, ks=ks)


def test_dataset_without_queries_or_gallery_is_refused() -> None:
    domains = ["a", "a", "a", "a", "b", "b"]
    roles = ["both"] * 4 + ["gallery", "gallery"]
    with pytest.raises(InvalidInputError, match="dataset 'b' has 0 query rows and 2 gallery rows"):
        evaluate_retrieval(EMBEDDINGS, LABELS, domains, roles=roles, ks=(1,))


def test_no_query_with_a_relevant_gallery_row_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="nothing can be scored"):
        evaluate_retrieval(EMBEDDINGS, [0, 1, 2, 3, 4, 5], ks=(1,))


def test_unknown_unmatched_policy_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unmatched_queries"):
        evaluate_retrieval(EMBEDDINGS, LABELS, ks=(1,), unmatched_queries="ignore")


def test_labels_of_any_integer_dtype_and_embeddings_of_any_float_dtype_are_accepted() -> None:
    reference = evaluate_retrieval(EMBEDDINGS, LABELS, ks=(1,))
    assert evaluate_retrieval(torch.tensor(EMBEDDINGS, dtype=torch.float64), np.int32(LABELS), ks=(1,)) == reference
    assert evaluate_retrieval(torch.tensor(EMBEDDINGS).half(), torch.tensor(LABELS, dtype=torch.int16), ks=(1,)) == (
        reference
    )
