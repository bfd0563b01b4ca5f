"""Under several processes the data is read once in full: the main process checks every image and draws the split;
the others take its split record and its unreadable files, check nothing and draw nothing, and hold the same rows
(peft_puma/training/loop.py, _load_data; docs/collections.md, "Reading speed")."""

from __future__ import annotations

import contextlib

import pytest
from search.messy_tree import make_messy_tree

from peft_puma.data import images
from peft_puma.data.schema import CLASS_NAME_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, ROLE_COLUMN
from peft_puma.training import load_config
from peft_puma.training.loop import _load_data


class _Process:
    """What _load_data asks of an accelerator, for one of two processes."""

    def __init__(self, main: bool) -> None:
        self.is_main_process, self.num_processes = main, 2

    def main_process_first(self):
        return contextlib.nullcontext()


def _config(tmp_path):
    keys = {"dataset_path": str(tmp_path / "tree"), "on_error": "skip", "output_dir": "x", "backbone": "b"}
    return load_config(None, keys)


def _rows(source) -> dict:
    columns = (LABEL_COLUMN, ROLE_COLUMN, CLASS_NAME_COLUMN)
    return {
        split: (
            table.cast_column(IMAGE_COLUMN, table.features[IMAGE_COLUMN].__class__(decode=False))[IMAGE_COLUMN],
            [table[column] for column in columns],
        )  # fmt: skip
        for split, table in source.data.items()
    }


def test_the_other_processes_check_no_image_and_draw_no_split_yet_hold_the_main_process_rows(tmp_path, monkeypatch):
    make_messy_tree(str(tmp_path / "tree"), bad_name=False, self_loop=False)
    config = _config(tmp_path)
    sent: list = []
    monkeypatch.setattr("accelerate.utils.broadcast_object_list", lambda objects: sent.append(objects) or objects)
    main = _load_data(config, _Process(main=True))
    assert [item.path for item in main.unreadable] == [str(tmp_path / "tree" / "signs" / "signs_2" / "9.jpg")]

    def never(*args, **kwargs):
        raise AssertionError("another process checked the images again")

    monkeypatch.setattr(images, "find_bad_images", never)
    monkeypatch.setattr("peft_puma.data.folder_tree.find_bad_images", never)
    monkeypatch.setattr("peft_puma.data.collections.SplitRecord.draw", never)
    received = sent[-1]
    monkeypatch.setattr("accelerate.utils.broadcast_object_list", lambda objects: received)
    other = _load_data(config, _Process(main=False))
    assert _rows(other) == _rows(main)
    assert other.split.domains == main.split.domains and other.description == main.description
    assert other.unreadable == main.unreadable


def test_a_single_process_reads_as_before(tmp_path, monkeypatch):
    make_messy_tree(str(tmp_path / "tree"), bad_name=False, self_loop=False)
    config = _config(tmp_path)
    single = _Process(main=True)
    single.num_processes = 1
    monkeypatch.setattr("accelerate.utils.broadcast_object_list", pytest.fail)
    assert _load_data(config, single).split is not None
