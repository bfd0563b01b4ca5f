"""--overwrite_output_dir: a fresh start in a finished or checkpointed run folder removes what the trainer wrote there
and nothing else (docs/safety.md); without it such a folder is refused, and the refusal names the flag."""

from __future__ import annotations

import json
import os

import pytest

from peft_puma import train
from peft_puma.errors import InvalidConfigError
from peft_puma.training import load_config


def _argv(values: dict) -> list[str]:
    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def _error_line(captured) -> str:
    lines = captured.err.strip().replace("\r", "\n").splitlines()
    assert lines and lines[-1].startswith("error: "), captured.err
    return lines[-1]


def _tree(folder: str) -> dict[str, int]:
    """Every file under ``folder`` with its size: what a refusal must leave as it was."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = os.path.getsize(path)
    return found


@pytest.fixture
def finished(tiny_values, capsys):
    values = {**tiny_values, "epochs": 1, "max_steps": 4}
    assert train.main(_argv(values)) == 0
    capsys.readouterr()
    return values


def test_without_the_flag_a_finished_run_is_refused_naming_the_flag(finished, capsys):
    assert train.main(_argv({**finished, "seed": 1})) == 2
    line = _error_line(capsys.readouterr())
    assert "already holds checkpoints" in line and "--overwrite_output_dir to start afresh there" in line
    os.rename(  # a finished run without checkpoints: the other refusal names the flag too
        os.path.join(finished["output_dir"], "checkpoints"), os.path.join(finished["output_dir"], "..", "aside")
    )
    assert train.main(_argv({**finished, "seed": 1})) == 2
    line = _error_line(capsys.readouterr())
    assert "already holds a finished run (results.json); pass --overwrite_output_dir to train afresh" in line


def test_overwrite_output_dir_trains_afresh_in_a_finished_run(finished, capsys):
    output_dir = finished["output_dir"]
    with open(os.path.join(output_dir, "train_log.jsonl")) as handle:
        first_log = handle.read()
    assert train.main([*_argv({**finished, "seed": 1}), "--overwrite_output_dir"]) == 0
    printed = capsys.readouterr().out
    removed = next(line for line in printed.splitlines() if line.startswith("overwrite_output_dir: removed"))
    for name in ("adapter_config.json", "checkpoints", "results.json", "train_log.jsonl", "peft_puma_training.json"):
        assert name in removed
    assert ".peft_puma.lock" not in removed and removed.endswith("starting afresh.")
    with open(os.path.join(output_dir, "peft_puma_training.json")) as handle:
        assert json.load(handle)["config"]["seed"] == 1  # the new run's file, not the old one's
    with open(os.path.join(output_dir, "train_log.jsonl")) as handle:
        second_log = handle.read()
    assert second_log.count("\n") == first_log.count("\n")  # a log of its own, not appended to the first run's
    assert os.listdir(os.path.join(output_dir, "checkpoints")) == ["checkpoint-4"]


def test_a_run_folder_holding_a_foreign_file_is_refused_and_left_untouched(finished, capsys):
    output_dir = finished["output_dir"]
    with open(os.path.join(output_dir, "my_notes.txt"), "w") as handle:
        handle.write("mine")
    before = _tree(output_dir)
    assert train.main([*_argv(finished), "--overwrite_output_dir"]) == 2
    line = _error_line(capsys.readouterr())
    assert "also files peft_puma did not write (my_notes.txt)" in line and "Nothing was touched" in line
    assert _tree(output_dir) == before


@pytest.mark.parametrize(
    "inside", [os.path.join("checkpoints", "my_notes.txt"), os.path.join("checkpoints", "checkpoint-4", "extra.txt")]
)
def test_a_foreign_file_inside_the_trainers_folders_is_refused_and_left_untouched(finished, capsys, inside):
    output_dir = finished["output_dir"]
    with open(os.path.join(output_dir, inside), "w") as handle:
        handle.write("mine")
    before = _tree(output_dir)
    assert train.main([*_argv(finished), "--overwrite_output_dir"]) == 2
    line = _error_line(capsys.readouterr())
    assert f"inside its folders, files peft_puma did not write ({inside})" in line and "Nothing was touched" in line
    assert _tree(output_dir) == before


def test_overwrite_keeps_the_logs_folder_and_what_a_user_put_there(finished, capsys):
    output_dir = finished["output_dir"]
    os.makedirs(os.path.join(output_dir, "logs"), exist_ok=True)
    with open(os.path.join(output_dir, "logs", "mine.txt"), "w") as handle:
        handle.write("mine")
    assert train.main([*_argv({**finished, "seed": 1}), "--overwrite_output_dir"]) == 0
    removed = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("overwrite_output_dir: removed")
    )
    assert "logs," not in removed and "logs from" not in removed
    with open(os.path.join(output_dir, "logs", "mine.txt")) as handle:
        assert handle.read() == "mine"


def test_overwrite_and_resume_together_are_refused():
    values = {"output_dir": "o", "backbone": "b", "dataset_path": "d", "resume": True, "overwrite_output_dir": True}
    with pytest.raises(InvalidConfigError, match="give one of them"):
        load_config(None, values)
