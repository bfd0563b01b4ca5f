"""Every user mistake around a run is a one-line error with exit status 2 that touches nothing, and a damaged
checkpoint or an offline push loses nothing that was finished."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from peft_puma import evaluate, train
from peft_puma.errors import InvalidConfigError
from peft_puma.runs.checkpoints import complete_checkpoints, remove_partial_checkpoints
from peft_puma.training import load_config
from peft_puma.training import loop as training_loop


def _argv(values: dict) -> list[str]:
    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def _one_line_error(captured) -> str:
    """The command's error: one line, the last on stderr (progress bars of model loading may come before it)."""
    lines = captured.err.strip().replace("\r", "\n").splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    return errors[0]


def test_output_dir_holding_user_files_is_refused_untouched(tiny_values, capsys):
    os.makedirs(tiny_values["output_dir"])
    notes = os.path.join(tiny_values["output_dir"], "README.md")
    with open(notes, "w") as handle:
        handle.write("my own notes")
    assert train.main(_argv(tiny_values)) == train.EXIT_INVALID
    assert "is not empty and does not hold a peft_puma training run" in _one_line_error(capsys.readouterr())
    assert os.listdir(tiny_values["output_dir"]) == ["README.md"]
    assert open(notes).read() == "my own notes"


def test_output_dir_that_is_a_file_is_refused(tiny_values, capsys):
    with open(tiny_values["output_dir"], "w") as handle:
        handle.write("x")
    assert train.main(_argv(tiny_values)) == train.EXIT_INVALID
    assert "is a file" in _one_line_error(capsys.readouterr())


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_non_finite_learning_rate_is_refused_before_anything_loads(tiny_values, value):
    with pytest.raises(InvalidConfigError, match="learning_rate must be a finite number"):
        load_config(None, {**tiny_values, "learning_rate": float(value.replace(".", "", 1))})
    with pytest.raises(InvalidConfigError, match=r"lr_multipliers.head must be a finite number"):
        load_config(None, {**tiny_values, "lr_multipliers": {"head": float(value.replace(".", "", 1))}})


def test_resume_from_a_missing_checkpoint_path_says_it_does_not_exist(tiny_values, capsys):
    assert train.main([*_argv(tiny_values), "--resume", "/nonexistent/checkpoint-4"]) == train.EXIT_INVALID
    assert "/nonexistent/checkpoint-4 does not exist" in _one_line_error(capsys.readouterr())


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tiny_values, capsys):
    values = {**tiny_values, "epochs": 1, "max_steps": 8}
    train.main(_argv(values))
    output_dir = values["output_dir"]
    (_, older), (_, newest) = complete_checkpoints(output_dir)
    with open(os.path.join(newest, "model.safetensors"), "r+b") as handle:
        handle.truncate(100)
    os.remove(os.path.join(output_dir, "results.json"))
    capsys.readouterr()
    explicit = train.main([*_argv(values), "--resume", newest])
    assert explicit == train.EXIT_INVALID
    assert "model.safetensors cannot be read" in _one_line_error(capsys.readouterr())
    assert train.main([*_argv(values), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"Falling back to the previous complete checkpoint, {older}" in printed
    assert f"Resumed from {older}" in printed
    logged = [json.loads(line) for line in open(os.path.join(output_dir, "train_log.jsonl"))]
    entries = [(entry["step"], tuple(sorted(entry))) for entry in logged]  # a step, epoch or evaluation line
    assert len(entries) == len(set(entries))  # the resumed steps are logged once, not appended again


def test_resume_of_a_finished_run_says_it_had_finished(tiny_values, capsys):
    values = {**tiny_values, "epochs": 1}
    assert train.main(_argv(values)) == 0
    os.remove(os.path.join(values["output_dir"], "results.json"))
    capsys.readouterr()
    assert train.main([*_argv(values), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "step 8, the run had finished all its 8 steps" in printed and "epoch 2" not in printed


def test_a_finished_run_is_not_overwritten_by_a_fresh_start(tiny_values, capsys):
    values = {**tiny_values, "epochs": 1}
    assert train.main(_argv(values)) == 0
    shutil.rmtree(os.path.join(values["output_dir"], "checkpoints"))
    capsys.readouterr()
    assert train.main(_argv(values)) == train.EXIT_INVALID
    assert "already holds a finished run" in _one_line_error(capsys.readouterr())


def test_an_offline_push_keeps_the_run_and_prints_the_results_first(tiny_values, monkeypatch, capsys):
    def offline(directory, repo_id, **options):
        raise ConnectionError("Failed to resolve 'huggingface.co'\nretries exhausted")

    monkeypatch.setattr(training_loop, "push_folder", offline)
    values = {**tiny_values, "epochs": 1, "push_to_hub": True, "hub_model_id": "me/puma-tiny"}
    assert train.main(_argv(values)) == train.EXIT_INVALID
    captured = capsys.readouterr()
    assert "Results of the final epoch (test split)" in captured.out and "Adapter saved to" in captured.out
    error = _one_line_error(captured)
    assert "pushing it to the Hub repository 'me/puma-tiny' failed (ConnectionError" in error
    assert "push_folder('" in error and "'me/puma-tiny', private=False)" in error
    assert os.path.isfile(os.path.join(values["output_dir"], "adapter_model.safetensors"))


def test_only_peft_puma_staging_folders_are_removed_from_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    (root / ".checkpoint-12.tmp").mkdir(parents=True)
    (root / "notes.tmp").write_text("mine")
    (root / "backup.tmp").mkdir()
    assert remove_partial_checkpoints(str(tmp_path)) == [".checkpoint-12.tmp"]
    assert sorted(os.listdir(root)) == ["backup.tmp", "notes.tmp"]


def test_evaluate_a_missing_adapter_folder_fails_at_once(tiny_assets, tmp_path, capsys):
    argv = ["--dataset_path", tiny_assets["dataset"]]
    assert evaluate.main(["--adapter", str(tmp_path / "does_not_exist"), *argv]) == 2
    assert "does_not_exist does not exist" in _one_line_error(capsys.readouterr())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "adapter_config.json").write_text("{}")
    assert evaluate.main(["--adapter", str(tmp_path / "half"), *argv]) == 2
    assert "missing adapter_model.safetensors" in _one_line_error(capsys.readouterr())


def test_evaluate_a_truncated_adapter_names_it(finished_run, tmp_path, capsys):
    config, _ = finished_run
    copy = shutil.copytree(config.output_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints", "logs"))
    with open(copy / "adapter_model.safetensors", "r+b") as handle:
        handle.truncate(64)
    assert evaluate.main(["--adapter", str(copy), "--dataset_path", config.dataset_path]) == 2
    assert f"The adapter in {copy} cannot be loaded" in _one_line_error(capsys.readouterr())


def test_evaluate_output_never_overwrites_a_user_file(finished_run, tmp_path, capsys):
    config, _ = finished_run
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": 1}')
    argv = ["--adapter", config.output_dir, "--dataset_path", config.dataset_path, "--output", str(mine)]
    assert evaluate.main(argv) == 2
    assert "is not a results file written by peft_puma" in _one_line_error(capsys.readouterr())
    assert mine.read_text() == '{"mine": 1}'


def test_evaluate_a_split_the_data_lacks_is_a_one_line_error(finished_run, capsys):
    config, _ = finished_run
    argv = ["--adapter", config.output_dir, "--dataset_path", config.dataset_path, "--split", "validation"]
    assert evaluate.main(argv) == 2
    error = _one_line_error(capsys.readouterr())
    assert "--split 'validation': the data source has no 'validation' split (it has train, test)" in error
