"""The ``evaluate`` metric loads offline from the package and returns the Python API's numbers exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from peft_puma.evaluation import METRIC_PATH, evaluate_retrieval, load_metric

pytest.importorskip("evaluate")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def sample_rows():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(90, 8)).astype(np.float32)
    labels = rng.integers(0, 9, 90)
    domains = ["cub"] * 40 + ["inshop"] * 50
    roles = ["both"] * 40 + ["query"] * 20 + ["gallery"] * 30
    return embeddings, labels, domains, roles


def test_metric_path_lies_inside_the_package() -> None:
    path = Path(METRIC_PATH)
    assert path.is_file() and path.parent.parent.name == "evaluation" and path.parents[2].name == "peft_puma"


def test_evaluate_metric_returns_the_same_numbers_as_evaluate_retrieval() -> None:
    embeddings, labels, domains, roles = sample_rows()
    metric = load_metric()
    from_metric = metric.compute(predictions=embeddings, references=labels, domains=domains, roles=roles, ks=[1, 4])
    assert from_metric == evaluate_retrieval(embeddings, labels, domains, ks=(1, 4), roles=roles)


def test_multi_dataset_config_accumulates_domains_and_roles_across_batches() -> None:
    import evaluate

    embeddings, labels, domains, roles = sample_rows()
    metric = evaluate.load(METRIC_PATH, "multi_dataset")
    for rows in (slice(0, 35), slice(35, 90)):
        metric.add_batch(
            predictions=embeddings[rows], references=labels[rows], domains=domains[rows], roles=roles[rows]
        )
    assert metric.compute() == evaluate_retrieval(embeddings, labels, domains, roles=roles)


def test_importing_the_package_does_not_import_evaluate_faiss_or_metric_learning() -> None:
    code = (
        "import sys, peft_puma.evaluation, peft_puma.losses; "
        "heavy = [m for m in ('evaluate', 'faiss', 'pytorch_metric_learning') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert completed.returncode == 0, completed.stderr
