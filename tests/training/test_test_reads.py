"""Every read of a test split is on record when the ledger is on (PEFT_PUMA_TEST_READS): training's final evaluation
and `evaluate` each append one line naming the commit, the command, the data, the recipe's hash and the backbone's
fingerprint; validation reads and runs without the variable write nothing."""

from __future__ import annotations

import json

from peft_puma import evaluate, train
from peft_puma.evaluation.test_reads import LEDGER_VARIABLE, config_hash, record_test_read


def _argv(values: dict) -> list[str]:
    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_training_and_an_evaluate_each_record_their_test_read(tiny_values, tmp_path, monkeypatch, capsys):
    ledger = tmp_path / "test_reads.jsonl"
    monkeypatch.setenv(LEDGER_VARIABLE, str(ledger))
    values = {**tiny_values, "epochs": 2, "eval_every_epochs": 1}  # per-epoch reads score test too
    assert train.main(_argv(values)) == 0
    lines = _lines(ledger)
    assert [line["scored"] for line in lines] == [
        "training: a per-epoch evaluation",  # the tiny data has no validation split: its epochs read test
        "training puma: the final evaluation",
    ]
    final = lines[-1]
    run_file = json.loads((tmp_path / "run" / "peft_puma_training.json").read_text())
    assert final["split"] == "test" and final["config_hash"] == config_hash(run_file["config"])
    assert final["backbone_fingerprint"] == run_file["backbone_fingerprint"] and final["commit"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert final["unified_recall_at_1"] == results["unified"]["recall@1"]
    argv = ["--adapter", values["output_dir"], "--dataset_path", values["dataset_path"]]
    assert evaluate.main(argv) == 0
    read = _lines(ledger)[-1]
    assert read["scored"] == "evaluate, a trained adapter" and read["config_hash"] == final["config_hash"]
    assert read["backbone_fingerprint"] == final["backbone_fingerprint"]
    frozen_file = tmp_path / "frozen_test.json"
    assert evaluate.main([*argv, "--split", "test", "--zero_shot", "--output", str(frozen_file)]) == 0
    zero_shot = _lines(ledger)[-1]
    assert zero_shot["scored"] == "evaluate, the zero-shot backbone" and len(_lines(ledger)) == 4
    # the frozen weights it read: those the run was trained on (the same backbone)
    assert zero_shot["backbone_fingerprint"] == final["backbone_fingerprint"] and zero_shot["config_hash"] is None
    # and its results file names them too: every gain is measured against this row
    frozen = json.loads(frozen_file.read_text())
    assert frozen["backbone_fingerprint"] == final["backbone_fingerprint"] and frozen["training_seed"] is None
    capsys.readouterr()


def test_validation_reads_and_runs_without_the_variable_write_nothing(tmp_path, monkeypatch):
    ledger = tmp_path / "test_reads.jsonl"
    monkeypatch.setenv(LEDGER_VARIABLE, str(ledger))
    record_test_read("validation", "training", {"unified": {"recall@1": 0.5}})
    assert not ledger.exists()
    monkeypatch.delenv(LEDGER_VARIABLE)
    record_test_read("test", "training", {"unified": {"recall@1": 0.5}})
    assert not ledger.exists()
