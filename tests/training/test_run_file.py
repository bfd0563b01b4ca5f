"""The run file (peft_puma_training.json): one module writes and reads it, as a typed record (docs/training.md)."""

from __future__ import annotations

import json

import pytest

from peft_puma.errors import IncompatibleCheckpointError
from peft_puma.runs.layout import RUN_FILE
from peft_puma.runs.run_file import RunRecord, read_run_file, write_run_file


def test_a_record_round_trips_with_the_config_last(tmp_path):
    record = RunRecord(
        method="puma",
        backbone="assets/uml_mini_vit",
        backbone_format="auto",
        image_size=32,
        trainable_params=1234,
        num_processes=2,
        data_sizes={"glyphs": {"train_images": 10, "train_classes": 2, "test_images": 4, "test_classes": 1}},
        data_source={"uml_mini_dir": "data/uml_mini", "seed": 0},
        config={"method": "puma", "puma": {"keep_prob": 0.5}},
    )
    write_run_file(str(tmp_path), record)
    assert read_run_file(str(tmp_path)) == record
    assert list(json.loads((tmp_path / RUN_FILE).read_text()))[-1] == "config"


def test_an_older_run_file_reads_with_defaults_and_unknown_keys_are_ignored(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"method": "lora", "backbone": "b", "config": {}, "future_key": 1}))
    record = read_run_file(str(tmp_path))
    assert (record.method, record.trainable_params, record.num_processes, record.data_sizes) == ("lora", None, 1, None)


def test_no_run_file_is_none_and_a_damaged_one_is_named(tmp_path):
    assert read_run_file(str(tmp_path)) is None
    (tmp_path / RUN_FILE).write_text('{"method": "puma"')
    with pytest.raises(IncompatibleCheckpointError, match=f"{RUN_FILE} is damaged"):
        read_run_file(str(tmp_path))
    (tmp_path / RUN_FILE).write_text(json.dumps({"method": "puma"}))
    with pytest.raises(IncompatibleCheckpointError, match="no backbone, config"):
        read_run_file(str(tmp_path))
