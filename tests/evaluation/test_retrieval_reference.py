"""evaluate_retrieval against independent references: a brute-force loop, and pytorch-metric-learning.

The brute force ranks the whole gallery of every query in plain Python (full similarity matrix, sort by similarity
then position) and applies the textbook definitions, sharing no code with the package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peft_puma.evaluation import evaluate_retrieval
from peft_puma.evaluation.knn import faiss_available

KS = (1, 2, 4, 8)


def brute_force(embeddings, labels, query_rows, gallery_rows, ks=KS) -> dict[str, float]:
    vectors = torch.nn.functional.normalize(torch.as_tensor(embeddings, dtype=torch.float32), dim=1)
    similarity = (vectors @ vectors.T).tolist()
    sums = dict.fromkeys([f"recall@{k}" for k in ks] + ["map@r", "r_precision"], 0.0)
    scored = unmatched = 0
    for q in query_rows:
        candidates = sorted((g for g in gallery_rows if g != q), key=lambda g: (-similarity[q][g], g))
        relevant = [labels[g] == labels[q] for g in candidates]
        r = sum(relevant)
        if r == 0:
            unmatched += 1
            continue
        scored += 1
        for k in ks:
            sums[f"recall@{k}"] += float(any(relevant[:k]))
        sums["r_precision"] += sum(relevant[:r]) / r
        hits, precision_sum = 0, 0.0
        for i, is_relevant in enumerate(relevant[:r], start=1):
            if is_relevant:
                hits += 1
                precision_sum += hits / i
        sums["map@r"] += precision_sum / r
    counts = {"num_queries": scored, "num_unmatched_queries": unmatched, "num_gallery": len(gallery_rows)}
    return {name: value / scored for name, value in sums.items()} | counts


def random_test_set(seed: int = 0):
    """Two leave-one-out datasets and one In-shop style one; raw labels overlap across datasets; one singleton."""
    rng = np.random.default_rng(seed)
    sizes = {"a": 70, "b": 50, "inshop": 40}
    embeddings = rng.normal(size=(sum(sizes.values()), 6)).astype(np.float32)
    domains = [name for name, size in sizes.items() for _ in range(size)]
    labels = np.concatenate([rng.integers(0, 8, 70), rng.integers(0, 6, 50), rng.integers(0, 10, 40)])
    labels[0] = 99  # a class of size one
    roles = ["both"] * 120 + ["query"] * 15 + ["gallery"] * 25
    return embeddings, labels, domains, roles


def expected_results(embeddings, labels, domains, roles) -> dict:
    unique = [(d, int(label)) for d, label in zip(domains, labels)]
    rows = range(len(labels))
    queries = [i for i in rows if roles[i] != "gallery"]
    gallery = [i for i in rows if roles[i] != "query"]
    expected = {"unified": brute_force(embeddings, unique, queries, gallery), "per_dataset": {}}
    for name in dict.fromkeys(domains):
        expected["per_dataset"][name] = brute_force(
            embeddings, unique, [i for i in queries if domains[i] == name], [i for i in gallery if domains[i] == name]
        )
    return expected


def assert_matches(result: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize(
    ("backend", "block_size"),
    [("torch", None), ("torch", 1), ("torch", 13)] + ([("faiss", None), ("faiss", 9)] if faiss_available() else []),
)
def test_unified_and_per_dataset_metrics_match_brute_force(backend: str, block_size: int | None) -> None:
    embeddings, labels, domains, roles = random_test_set()
    result = evaluate_retrieval(embeddings, labels, domains, roles=roles, backend=backend, block_size=block_size)
    expected = expected_results(embeddings, labels, domains, roles)
    assert_matches(result["unified"], expected["unified"])
    assert result["unified"]["num_unmatched_queries"] >= 1  # the singleton at least
    for name, scores in expected["per_dataset"].items():
        assert_matches(result["per_dataset"][name], scores)


def test_accepts_torch_and_numpy_inputs_alike() -> None:
    embeddings, labels, domains, roles = random_test_set(seed=1)
    from_numpy = evaluate_retrieval(embeddings, labels, domains, roles=roles)
    from_torch = evaluate_retrieval(
        torch.from_numpy(embeddings).requires_grad_(), torch.from_numpy(labels), domains, roles=roles
    )
    assert from_numpy == from_torch


def accuracy_calculator():
    calculators = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    return calculators.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"), k="max_bin_count"
    )


def test_leave_one_out_agrees_with_pytorch_metric_learning() -> None:
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(300, 16)).astype(np.float32)
    labels = rng.integers(0, 30, 300)
    labels[:2] = [1000, 1001]  # two classes of size one: pml leaves lone queries out, as we do
    vectors = torch.nn.functional.normalize(torch.from_numpy(embeddings), dim=1)
    pml = accuracy_calculator().get_accuracy(
        vectors, torch.from_numpy(labels), vectors, torch.from_numpy(labels), ref_includes_query=True
    )
    ours = evaluate_retrieval(embeddings, labels, ks=(1,))["unified"]
    assert ours["num_unmatched_queries"] == 2
    assert ours["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-6)


def test_separate_query_and_gallery_agree_with_pytorch_metric_learning() -> None:
    rng = np.random.default_rng(4)
    embeddings = rng.normal(size=(260, 16)).astype(np.float32)
    labels = rng.integers(0, 25, 260)
    roles = ["query"] * 100 + ["gallery"] * 160
    vectors = torch.nn.functional.normalize(torch.from_numpy(embeddings), dim=1)
    label_tensor = torch.from_numpy(labels)
    pml = accuracy_calculator().get_accuracy(
        vectors[:100], label_tensor[:100], vectors[100:], label_tensor[100:], ref_includes_query=False
    )
    ours = evaluate_retrieval(embeddings, labels, ks=(1,), roles=roles)["unified"]
    assert ours["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-6)
