"""Every read of a test split is on record when the ledger is on (PEFT_PUMA_TEST_READS): training's final evaluation
and `evaluate` each append one line naming the commit, the command, the data, the recipe's hash and the backbone's
fingerprint; validation reads and runs without the variable write nothing."""

from __future__ import annotations

import json
import os

from peft_puma import evaluate, train
from peft_puma.evaluation import test_reads
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


# ------------------------------------------------------------------------------------- a ledger that cannot take it
def _never(*args, **kwargs):
    raise AssertionError("a model loaded although the ledger could not take the test read")


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def _bad_ledgers(tmp_path) -> dict[str, str]:
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("not a folder\n")
    return {
        "a folder": str(tmp_path / "a_folder"),
        "a path under a regular file": str(tmp_path / "a_file" / "reads.jsonl"),
        "a place where no file can be made": "/proc/peft_puma_reads.jsonl",
    }


EXPECTED = {
    "a folder": "is a folder; name a .jsonl file",
    "a path under a regular file": "a_file is a regular file, not a folder",
    "a place where no file can be made": "no file can be made in the folder /proc",
}


def test_train_refuses_a_ledger_it_cannot_write_before_any_model_loads(tiny_values, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("peft_puma.training.loop.load_backbone", _never)
    for case, ledger in _bad_ledgers(tmp_path).items():
        monkeypatch.setenv(LEDGER_VARIABLE, ledger)
        assert train.main(_argv({**tiny_values, "max_steps": 1})) == 2, case
        line = _error_line(capsys.readouterr().err)
        assert EXPECTED[case] in line and LEDGER_VARIABLE in line, (case, line)


def test_evaluate_refuses_a_ledger_it_cannot_write_before_any_model_loads(tiny_assets, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("peft_puma.evaluate.load_for_inference", _never)
    argv = ["--zero_shot", "--backbone", tiny_assets["backbone"], "--dataset_path", tiny_assets["dataset"]]
    for case, ledger in _bad_ledgers(tmp_path).items():
        monkeypatch.setenv(LEDGER_VARIABLE, ledger)
        assert evaluate.main(argv) == 2, case
        assert EXPECTED[case] in _error_line(capsys.readouterr().err), case


def test_a_ledger_failing_at_the_end_leaves_the_run_saved_and_says_what_to_run(
    tiny_values, tmp_path, monkeypatch, capsys
):
    """A ledger that passes the start-up check and fails when the final read is written (here: it became a folder
    meanwhile) ends the run with one line, after the adapter and results are saved."""
    ledger = tmp_path / "reads.jsonl"
    monkeypatch.setenv(LEDGER_VARIABLE, str(ledger))
    real_check = test_reads.check_test_reads

    def check_then_break(*args, **kwargs):
        real_check(*args, **kwargs)
        ledger.mkdir()

    monkeypatch.setattr("peft_puma.training.loop.check_test_reads", check_then_break)
    values = {**tiny_values, "epochs": 1, "max_steps": 1}
    assert train.main(_argv(values)) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"could not be added to the ledger {ledger}" in line and "The run is complete and saved in" in line
    assert f"python -m peft_puma.evaluate --adapter {values['output_dir']} --split test" in line
    run = tmp_path / "run"
    assert (run / "results.json").is_file() and (run / "adapter_config.json").is_file()
    assert any(name.startswith("adapter_model") for name in os.listdir(run))


# ------------------------------------------------------------------------------- a read that is not on the record
def _checkout(tmp_path, monkeypatch) -> str:
    """A fake checkout of the project as the working directory, the package outside any checkout."""
    root = tmp_path / "checkout"
    (root / ".git").mkdir(parents=True)
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "benchmarks" / "results" / "test_reads.jsonl").write_text("")
    monkeypatch.setattr(test_reads, "_PACKAGE_ROOT", str(tmp_path / "installed"))
    monkeypatch.setattr(test_reads, "_warned_unrecorded", False)
    monkeypatch.chdir(root)
    monkeypatch.delenv(LEDGER_VARIABLE)
    return str(root)


def test_a_test_read_without_the_ledger_in_a_checkout_warns_in_one_line(tiny_assets, tmp_path, monkeypatch, capsys):
    root = _checkout(tmp_path, monkeypatch)
    argv = ["--zero_shot", "--backbone", tiny_assets["backbone"], "--dataset_path", tiny_assets["dataset"]]
    assert evaluate.main(argv) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: this read of the test split is not on record: {LEDGER_VARIABLE} is not set in this checkout of "
        f"peft_puma ({root}); to record it, run the command as {LEDGER_VARIABLE}="
        f'{root}/benchmarks/results/test_reads.jsonl ... (docs/benchmarks.md, "Test reads").'
    ]
    assert (tmp_path / "checkout" / "benchmarks" / "results" / "test_reads.jsonl").read_text() == ""


def test_no_warning_outside_a_checkout_on_a_validation_read_or_with_the_ledger_on(tmp_path, monkeypatch, capsys):
    _checkout(tmp_path, monkeypatch)
    test_reads.check_test_reads(["validation"])
    monkeypatch.setenv(LEDGER_VARIABLE, str(tmp_path / "reads.jsonl"))
    test_reads.check_test_reads(["test"])
    monkeypatch.delenv(LEDGER_VARIABLE)
    monkeypatch.chdir(tmp_path)  # neither the working directory nor the package lies in a checkout
    test_reads.check_test_reads(["test"])
    assert capsys.readouterr().err == ""


def test_the_package_inside_a_checkout_is_enough_to_warn(tmp_path, monkeypatch, capsys):
    root = _checkout(tmp_path, monkeypatch)
    monkeypatch.setattr(test_reads, "_PACKAGE_ROOT", os.path.join(root, "peft_puma", ".."))
    monkeypatch.chdir(tmp_path)
    test_reads.check_test_reads(["test"])
    test_reads.check_test_reads(["test"])  # once per process
    assert len(capsys.readouterr().err.splitlines()) == 1
