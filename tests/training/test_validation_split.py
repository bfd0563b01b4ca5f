"""The validation split: ``eval_split`` chooses what the final evaluation scores, evaluations every
``eval_every_epochs`` score the validation split where the data has one, and ``train_log.jsonl`` says which split and
epoch each evaluation scored, beside each epoch's mean training loss (docs/training.md)."""

from __future__ import annotations

import json
import os

import datasets
import pytest

from peft_puma import train as train_command
from peft_puma.config.parsing import load_keys
from peft_puma.data.config import DataConfig
from peft_puma.data.schema import LABEL_COLUMN, column_values
from peft_puma.data.unified import dataset_sizes, load_unified
from peft_puma.errors import DatasetLayoutError
from peft_puma.training import NonFiniteLossError, load_config, train
from peft_puma.training import loop as training_loop

from .fault_runner import nan_loss_at_step

# tests/training/fixtures.py: 66 training rows, batch 8 -> 8 steps per epoch; validation classes 2 per dataset.
STEPS_PER_EPOCH = 8
VALIDATION_QUERIES = 8 + 8 + 4  # stripes and colours: 2 classes x 4 "both" rows; shop: 2 classes x 2 queries


def _log(output_dir: str) -> list[dict]:
    with open(os.path.join(output_dir, "train_log.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def _evaluations(output_dir: str) -> list[tuple[str, int, int]]:
    return [(entry["split"], entry["epoch"], entry["step"]) for entry in _log(output_dir) if "split" in entry]


@pytest.fixture
def validation_values(tiny_values, tiny_assets) -> dict:
    """A tiny run on the dataset with a validation split, evaluated after every epoch."""
    values = {**tiny_values, "dataset_path": tiny_assets["dataset_with_validation"]}
    return {**values, "eval_every_epochs": 1, "save_every_steps": 0}


@pytest.fixture
def embedded_labels(monkeypatch) -> list[set[int]]:
    """The labels of the rows of every split the trainer embeds, call by call."""
    calls: list[set[int]] = []
    embed_split = training_loop.embed_split

    def spy(model, rows, *args, **kwargs):
        calls.append(set(column_values(rows, LABEL_COLUMN)))
        return embed_split(model, rows, *args, **kwargs)

    monkeypatch.setattr(training_loop, "embed_split", spy)
    return calls


def _split_labels(dataset_path: str, split: str) -> set[int]:
    return set(column_values(datasets.load_from_disk(dataset_path)[split], LABEL_COLUMN))


def test_eval_split_validation_scores_the_validation_rows_and_never_embeds_the_test_split(
    validation_values, embedded_labels
):
    result = train(load_config(None, {**validation_values, "eval_split": "validation"}))
    validation = _split_labels(validation_values["dataset_path"], "validation")
    assert embedded_labels == [validation, validation]  # after epoch 1, then the final evaluation (epoch 2)
    assert result.split == "validation" and result.results["unified"]["num_queries"] == VALIDATION_QUERIES
    assert result.table.startswith("Results of the final epoch (validation split)")
    with open(os.path.join(validation_values["output_dir"], "results.json")) as handle:
        saved = json.load(handle)
    assert saved["split"] == "validation" and saved["unified"] == json.loads(json.dumps(result.results["unified"]))
    card = open(os.path.join(validation_values["output_dir"], "README.md")).read()
    assert "Results of the final epoch (validation split)" in card and "- results: the validation split" in card
    assert _evaluations(validation_values["output_dir"]) == [("validation", 1, 8), ("validation", 2, 16)]
    scores = [entry for entry in _log(validation_values["output_dir"]) if "split" in entry]
    assert all(not key.startswith("eval/") for entry in scores for key in entry)
    assert {"validation/stripes/recall@1", "validation/shop/recall@1", "validation/harmonic/recall@1"} <= set(
        scores[-1]
    )
    assert scores[-1]["validation/unified/recall@1"] == result.results["unified"]["recall@1"]


def test_per_epoch_evaluations_score_the_validation_split_and_the_final_one_the_test_split(
    validation_values, embedded_labels
):
    result = train(load_config(None, validation_values))  # eval_split: test, the default
    validation = _split_labels(validation_values["dataset_path"], "validation")
    test = _split_labels(validation_values["dataset_path"], "test")
    assert embedded_labels == [validation, validation, test]  # the last epoch's validation point too
    assert result.split == "test" and result.table.startswith("Results of the final epoch (test split)")
    output_dir = validation_values["output_dir"]
    assert _evaluations(output_dir) == [("validation", 1, 8), ("validation", 2, 16), ("test", 2, 16)]
    final = _log(output_dir)[-1]
    assert final["eval/unified/recall@1"] == result.results["unified"]["recall@1"]  # the keys readers know
    assert {"eval/stripes/recall@1", "eval/colours/recall@1", "eval/shop/recall@1", "eval/harmonic/recall@1"} <= set(
        final
    )
    with open(os.path.join(output_dir, "results.json")) as handle:
        assert json.load(handle)["split"] == "test"


def test_each_epoch_logs_its_mean_training_loss(finished_run):
    config, result = finished_run
    lines = [entry for entry in _log(config.output_dir) if "train/epoch_loss" in entry]
    assert [(entry["epoch"], entry["step"]) for entry in lines] == [(e, e * STEPS_PER_EPOCH) for e in range(1, 5)]
    for entry in lines:
        epoch_losses = result.losses[entry["step"] - STEPS_PER_EPOCH : entry["step"]]
        assert entry["train/epoch_loss"] == pytest.approx(sum(epoch_losses) / STEPS_PER_EPOCH, rel=1e-12)
        assert set(entry) == {"epoch", "step", "train/epoch_loss"}


def test_a_run_resumed_within_an_epoch_logs_the_uninterrupted_epoch_loss(tiny_values, tmp_path, monkeypatch):
    values = {**tiny_values, "epochs": 1}  # checkpoints at steps 4 and 8
    reference = train(load_config(None, {**values, "output_dir": str(tmp_path / "reference")}))
    with nan_loss_at_step(monkeypatch, 7), pytest.raises(NonFiniteLossError):
        train(load_config(None, values))  # stops in epoch 1, its newest checkpoint at step 4
    train(load_config(None, {**values, "resume": True}))
    (line,) = [entry for entry in _log(values["output_dir"]) if "train/epoch_loss" in entry]
    assert line["train/epoch_loss"] == pytest.approx(sum(reference.losses) / STEPS_PER_EPOCH, rel=1e-5)


def test_eval_split_validation_on_data_without_one_is_a_one_line_error_before_the_backbone_loads(
    tiny_values, monkeypatch, capsys
):
    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone was loaded")

    monkeypatch.setattr(training_loop, "load_backbone", no_backbone)
    argv = [f"--{key}={json.dumps(value)}" for key, value in tiny_values.items()]
    assert train_command.main([*argv, "--eval_split", "validation"]) == train_command.EXIT_INVALID
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: eval_split 'validation': the data source has no 'validation' split (it has ")
    assert "train, test" in error and "Score the 'test' split (the default)" in error
    assert not os.path.exists(os.path.join(tiny_values["output_dir"], "train_log.jsonl"))


def _load(dataset_path: str) -> datasets.DatasetDict:
    return load_unified(load_keys(None, {"dataset_path": dataset_path}, DataConfig).validate())


def test_dataset_sizes_count_the_validation_split_between_train_and_test(tiny_assets):
    with_validation = dataset_sizes(_load(tiny_assets["dataset_with_validation"]))
    assert list(with_validation["shop"]) == [
        "train_images",
        "train_classes",
        "validation_images",
        "validation_classes",
        "test_images",
        "test_classes",
    ]
    assert with_validation["shop"]["validation_images"] == 10 and with_validation["shop"]["validation_classes"] == 2
    without = dataset_sizes(_load(tiny_assets["dataset"]))
    assert list(without["shop"]) == ["train_images", "train_classes", "test_images", "test_classes"]


def test_a_validation_split_without_the_row_schema_is_refused(tiny_assets, tmp_path):
    data = datasets.load_from_disk(tiny_assets["dataset_with_validation"])
    data["validation"] = data["validation"].remove_columns("role")
    data.save_to_disk(str(tmp_path / "broken"))
    with pytest.raises(DatasetLayoutError, match=r"'validation' split of the data source lacks column\(s\) \['role'\]"):
        _load(str(tmp_path / "broken"))


def test_an_epoch_is_evaluated_before_its_checkpoint_so_a_resume_never_skips_its_point(validation_values, monkeypatch):
    """A checkpoint written at an epoch's end must come after that epoch's evaluation: a run killed during the
    evaluation then resumes from the checkpoint before it, and the learning curve keeps every epoch."""
    events: list[tuple[str, int]] = []
    evaluate, save = training_loop._maybe_evaluate_epoch, training_loop.ckpt.save_checkpoint

    def evaluate_spy(config, accelerator, run, position):
        events.append(("evaluate", position.step))
        return evaluate(config, accelerator, run, position)

    def save_spy(accelerator, output_dir, step, *args, **kwargs):
        events.append(("save", step))
        return save(accelerator, output_dir, step, *args, **kwargs)

    monkeypatch.setattr(training_loop, "_maybe_evaluate_epoch", evaluate_spy)
    monkeypatch.setattr(training_loop.ckpt, "save_checkpoint", save_spy)
    train(load_config(None, {**validation_values, "epochs": 3, "save_every_steps": STEPS_PER_EPOCH}))
    boundaries = [STEPS_PER_EPOCH * epoch for epoch in (1, 2)]
    for step in boundaries:
        assert events.index(("evaluate", step)) < events.index(("save", step)), events
