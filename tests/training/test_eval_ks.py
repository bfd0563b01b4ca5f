"""k values larger than a gallery: train and evaluate refuse them at start (before the backbone or the model loads),
naming the smallest gallery, its size and the k that fit."""

from __future__ import annotations

import json

import pytest

from peft_puma import evaluate, train
from peft_puma.evaluation.retrieval import KTooLargeError, check_retrieval


def _argv(values: dict) -> list[str]:
    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def _error_line(err: str) -> str:
    lines = err.strip().replace("\r", "\n").splitlines()
    assert lines and lines[-1].startswith("error: "), err
    return lines[-1]


def _never(*args, **kwargs):
    raise AssertionError("loaded a model although a k could not be scored")


def test_the_refusal_names_the_smallest_gallery_not_the_first():
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3]
    domains = ["big"] * 8 + ["small"] * 4  # 'small': 4 rows, 3 a query can retrieve
    with pytest.raises(KTooLargeError) as error:
        check_retrieval(labels, domains, ks=(1, 4))
    assert (error.value.k, error.value.limit, error.value.scope) == (4, 3, "dataset 'small'")


def test_train_refuses_eval_ks_larger_than_the_smallest_gallery_before_the_backbone_loads(
    tiny_values, monkeypatch, capsys
):
    monkeypatch.setattr("peft_puma.training.loop.load_backbone", _never)
    assert train.main(_argv({**tiny_values, "eval_ks": [1, 4, 10]})) == 2
    # the tiny test split: stripes and colours 12 rows each (11 retrievable), shop 9 gallery rows for its queries
    assert _error_line(capsys.readouterr().err) == (
        "error: eval_ks [1, 4, 10]: k = 10 exceeds the 9 gallery rows a query of dataset 'shop' in the test split can "
        "retrieve (the smallest gallery; the query itself excluded); use eval_ks no larger than 9, e.g. [1, 4]."
    )


def test_evaluate_refuses_eval_ks_larger_than_the_smallest_gallery_before_the_model_loads(
    tiny_assets, monkeypatch, capsys
):
    monkeypatch.setattr("peft_puma.evaluate.load_for_inference", _never)
    argv = ["--zero_shot", "--backbone", tiny_assets["backbone"], "--dataset_path", tiny_assets["dataset"]]
    assert evaluate.main([*argv, "--eval_ks", "1", "10"]) == 2
    assert _error_line(capsys.readouterr().err) == (
        "error: --eval_ks 1 10: k = 10 exceeds the 9 gallery rows a query of dataset 'shop' in the test split can "
        "retrieve (the smallest gallery; the query itself excluded); use --eval_ks no larger than 9, e.g. 1."
    )


def test_the_default_eval_ks_fit_the_tiny_galleries(tiny_values, monkeypatch):
    """The default [1, 2, 4, 8] needs 8 gallery rows in every dataset; the check passes and the backbone is next."""
    monkeypatch.setattr("peft_puma.training.loop.load_backbone", _never)
    values = {key: value for key, value in tiny_values.items() if key != "eval_ks"}
    with pytest.raises(AssertionError, match="loaded a model"):
        train.main(_argv(values))


def test_evaluate_of_a_run_scores_the_runs_eval_ks_by_default(tiny_values, tmp_path, capsys):
    """A run trained with eval_ks [1, 3] is evaluated at those ks, not at the default 1 2 4 8 (which a small
    collection might not fit); --eval_ks still chooses others."""
    values = {**tiny_values, "eval_ks": [1, 3], "epochs": 1, "max_steps": 1}
    assert train.main(_argv(values)) == 0
    output = tmp_path / "scores.json"
    argv = ["--adapter", values["output_dir"], "--dataset_path", values["dataset_path"], "--output", str(output)]
    assert evaluate.main(argv) == 0
    assert {key for key in json.loads(output.read_text())["unified"] if key.startswith("recall@")} == {
        "recall@1",
        "recall@3",
    }
    assert evaluate.main([*argv, "--eval_ks", "1", "2"]) == 0
    recalls = [key for key in json.loads(output.read_text())["unified"] if key.startswith("recall@")]
    assert recalls == ["recall@1", "recall@2"]
    capsys.readouterr()


def test_evaluate_scores_recall_at_1_whatever_eval_ks_holds(tiny_values, tmp_path, capsys):
    """Recall@1 is the figure every table, log line and test-read record shows: --eval_ks 2 adds it, never fails
    for its absence (it ended in "metric 'recall@1' is not in the result")."""
    values = {**tiny_values, "eval_ks": [2], "epochs": 1, "max_steps": 1}
    assert train.main(_argv(values)) == 0
    output = tmp_path / "scores.json"
    argv = ["--adapter", values["output_dir"], "--dataset_path", values["dataset_path"], "--output", str(output)]
    assert evaluate.main([*argv, "--eval_ks", "2"]) == 0
    recalls = [key for key in json.loads(output.read_text())["unified"] if key.startswith("recall@")]
    assert recalls == ["recall@1", "recall@2"]
    assert "Recall@1 (%):" in capsys.readouterr().out
