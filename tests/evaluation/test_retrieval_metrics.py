"""Hand-made retrieval cases with known answers (docs/spec.md section 7).

Embeddings are axis vectors or points on the unit circle at chosen angles, so every neighbour order is known.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from peft_puma.errors import InvalidInputError
from peft_puma.evaluation import evaluate_retrieval, format_table_row, harmonic_means, table_row, unified_top1_rows
from peft_puma.evaluation.metrics import map_at_r, r_precision, recall_at_k


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def test_per_query_metrics_of_a_known_match_pattern() -> None:
    matches = torch.tensor([[True, False, True, False, True], [False, False, False, True, True]])
    num_relevant = torch.tensor([3, 2])
    recalls = recall_at_k(matches, (1, 2, 4))
    assert [recalls[k].tolist() for k in (1, 2, 4)] == [[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    assert r_precision(matches, num_relevant).tolist() == pytest.approx([2 / 3, 0.0])
    # (1/R) * sum over i <= R of precision@i where the i-th neighbour matches: (1/3) * (1/1 + 2/3); second row 0.
    assert map_at_r(matches, num_relevant).tolist() == pytest.approx([5 / 9, 0.0])


def test_map_at_r_and_r_precision_of_one_query_against_a_separate_gallery() -> None:
    # Query at angle 0; gallery at 0.1 (A), 0.2 (B), 0.3 (A), 0.4 (B), 0.5 (A): R = 3, top-3 = A, B, A.
    embeddings = [unit(0.0)] + [unit(a) for a in (0.1, 0.2, 0.3, 0.4, 0.5)]
    labels = [0, 0, 1, 0, 1, 0]
    roles = ["query"] + ["gallery"] * 5
    result = evaluate_retrieval(embeddings, labels, roles=roles, ks=(1, 2, 5))["unified"]
    assert result["recall@1"] == 1.0 and result["recall@2"] == 1.0 and result["recall@5"] == 1.0
    assert result["r_precision"] == pytest.approx(2 / 3)
    assert result["map@r"] == pytest.approx(5 / 9)
    assert (result["num_queries"], result["num_gallery"], result["num_unmatched_queries"]) == (1, 5, 0)


def test_leave_one_out_excludes_the_query_from_its_neighbours_and_from_r() -> None:
    # Two classes of two identical points each: with the query itself excluded, every R is 1 and every top-1 matches.
    embeddings = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    result = evaluate_retrieval(embeddings, [0, 0, 1, 1], ks=(1,))["unified"]
    assert result == {
        "recall@1": 1.0,
        "map@r": 1.0,
        "r_precision": 1.0,
        "num_queries": 4,
        "num_unmatched_queries": 0,
        "num_gallery": 4,
    }


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_ties_are_broken_by_gallery_position(backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    # Query row 0 (class 0) is orthogonal to rows 1 and 2: both at similarity 0. The earlier row ranks first.
    query, other_class, same_class = [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]
    wrong_first = evaluate_retrieval(
        [query, other_class, same_class], [0, 1, 0], roles=["query", "gallery", "gallery"], ks=(1, 2), backend=backend
    )["unified"]
    assert (wrong_first["recall@1"], wrong_first["recall@2"], wrong_first["map@r"]) == (0.0, 1.0, 0.0)
    right_first = evaluate_retrieval(
        [query, same_class, other_class], [0, 0, 1], roles=["query", "gallery", "gallery"], ks=(1, 2), backend=backend
    )["unified"]
    assert (right_first["recall@1"], right_first["recall@2"], right_first["map@r"]) == (1.0, 1.0, 1.0)


def test_class_of_size_one_is_skipped_and_counted_but_stays_a_distractor() -> None:
    # Row 2 is alone in class 7: it has no R. It is still the nearest neighbour of row 0, whose R@1 becomes 0.
    embeddings = [unit(0.0), unit(0.5), unit(0.05), unit(2.0), unit(2.1)]
    labels = [1, 1, 7, 2, 2]
    result = evaluate_retrieval(embeddings, labels, ks=(1,))["unified"]
    assert result["num_unmatched_queries"] == 1 and result["num_queries"] == 4 and result["num_gallery"] == 5
    # Nearest rows: 0 -> 2 (miss), 1 -> 2 (0.45 rad away, row 0 is 0.5: miss), 3 -> 4 and 4 -> 3 (hits).
    assert result["recall@1"] == pytest.approx(2 / 4)
    with pytest.raises(InvalidInputError, match="1 queries .* no gallery row of their class"):
        evaluate_retrieval(embeddings, labels, ks=(1,), unmatched_queries="error")


def test_query_class_absent_from_the_gallery_is_skipped_or_an_error() -> None:
    embeddings = [unit(0.0), unit(1.0), unit(0.1), unit(1.1)]
    labels = [0, 5, 0, 1]
    roles = ["query", "query", "gallery", "gallery"]
    result = evaluate_retrieval(embeddings, labels, roles=roles, ks=(1,))["unified"]
    assert (result["num_queries"], result["num_unmatched_queries"], result["recall@1"]) == (1, 1, 1.0)
    with pytest.raises(InvalidInputError, match="query class absent from the gallery"):
        evaluate_retrieval(embeddings, labels, roles=roles, ks=(1,), unmatched_queries="error")


def test_unified_labels_are_unique_per_dataset_so_equal_raw_labels_do_not_match_across_datasets() -> None:
    # Each row's nearest neighbour is a row of the other dataset carrying the same raw label 0.
    embeddings = [unit(0.0), unit(0.05), unit(1.0), unit(1.05)]
    labels = [0, 0, 0, 0]
    domains = ["cub", "cars", "cub", "cars"]
    with_domains = evaluate_retrieval(embeddings, labels, domains, ks=(1,))
    assert with_domains["unified"]["recall@1"] == 0.0
    assert with_domains["per_dataset"]["cub"]["recall@1"] == 1.0  # within its own gallery, the other cub row
    assert evaluate_retrieval(embeddings, labels, ks=(1,))["unified"]["recall@1"] == 1.0  # no domains: one dataset


def test_inshop_queries_search_the_union_gallery_in_unified_mode() -> None:
    # Dataset "sop" is leave-one-out; "inshop" has a query row and two gallery rows. In the unified search the inshop
    # query's nearest row is a sop row; within inshop its nearest row is its own item.
    embeddings = [unit(0.0), unit(0.02), unit(3.0), unit(3.02), unit(0.01), unit(0.3), unit(2.0)]
    labels = [1, 1, 2, 2, 9, 9, 4]
    domains = ["sop"] * 4 + ["inshop"] * 3
    roles = ["both"] * 4 + ["query", "gallery", "gallery"]
    result = evaluate_retrieval(embeddings, labels, domains, ks=(1,), roles=roles)
    unified, inshop = result["unified"], result["per_dataset"]["inshop"]
    assert (unified["num_queries"], unified["num_gallery"]) == (5, 6)
    assert (inshop["num_queries"], inshop["num_gallery"], inshop["recall@1"]) == (1, 2, 1.0)
    # Unified: the 4 sop queries hit; the inshop query (at 0.01) finds sop rows at 0.0 / 0.02 first.
    assert unified["recall@1"] == pytest.approx(4 / 5)
    assert unified["map@r"] == pytest.approx(4 / 5)


def test_harmonic_mean_is_over_per_dataset_values() -> None:
    per_dataset = {"a": {"recall@1": 1.0}, "b": {"recall@1": 0.5}, "c": {"recall@1": 0.25}}
    harmonic = harmonic_means(per_dataset, ["recall@1"])
    assert harmonic == {"recall@1": pytest.approx(statistics.harmonic_mean([1.0, 0.5, 0.25])), "num_datasets": 3}
    assert harmonic_means({"a": {"recall@1": 0.0}, "b": {"recall@1": 0.9}}, ["recall@1"])["recall@1"] == 0.0


def test_one_call_returns_the_table_row_shape() -> None:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(60, 8, generator=generator)
    labels = torch.randint(0, 5, (60,), generator=generator)
    domains = ["cub"] * 20 + ["cars"] * 25 + ["sop"] * 15
    result = evaluate_retrieval(embeddings, labels, domains)
    assert list(result) == ["unified", "per_dataset", "harmonic"]
    assert list(result["per_dataset"]) == ["cub", "cars", "sop"]
    keys = ["recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision"]
    for scores in [result["unified"], *result["per_dataset"].values()]:
        assert all(0.0 <= scores[key] <= 1.0 for key in keys)
    expected_harmonic = statistics.harmonic_mean([s["recall@1"] for s in result["per_dataset"].values()])
    assert result["harmonic"]["recall@1"] == pytest.approx(expected_harmonic)
    row = table_row(result, datasets=["sop", "cub"])
    assert list(row) == ["sop", "cub", "Unified", "Harmonic"]
    assert row["Unified"] == pytest.approx(100 * result["unified"]["recall@1"])
    assert format_table_row(result).splitlines()[0] == "| cub | cars | sop | Unified | Harmonic |"


def test_unified_top1_rows_are_the_neighbours_unified_recall_at_1_scores() -> None:
    # Known neighbours on the circle: rows 1 and 2 tie as row 0's nearest (broken by row order), row 3 is a class of
    # one (no match: left out), row 4 is a gallery-only row (never a query), row 5 a query-only row (never a
    # neighbour), and row 2 (class b:1) sits where class a:0 does.
    embeddings = torch.tensor([unit(0.0), unit(0.0), unit(0.0), unit(1.5), unit(3.0), unit(2.9), unit(1.0)])
    labels = [0, 0, 1, 7, 2, 2, 1]
    domains = ["a", "a", "b", "a", "a", "a", "b"]
    roles = ["both", "both", "both", "both", "gallery", "query", "both"]
    queries, neighbours = unified_top1_rows(embeddings, labels, domains, roles)
    assert queries.tolist() == [0, 1, 2, 5, 6]
    assert neighbours.tolist() == [1, 0, 0, 4, 3]  # hits for rows 0, 1 and 5; rows 2 and 6 miss
    unified = evaluate_retrieval(embeddings, labels, domains, ks=(1,), roles=roles)["unified"]
    assert unified["num_queries"] == len(queries)
    same_class = [labels[q] == labels[n] and domains[q] == domains[n] for q, n in zip(queries, neighbours)]
    assert sum(same_class) / len(queries) == pytest.approx(unified["recall@1"])
