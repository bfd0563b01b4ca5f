"""Shared fixtures of the search tests: the tiny ViT, dataset and finished run of the training tests, a folder of image
files drawn from that dataset, and an index of its test split (docs/search.md)."""

from __future__ import annotations

import os
import shutil

import pytest
from training.fixtures import make_backbone, make_dataset, tiny_config

from peft_puma.search.cli import main


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, str]:
    """Backbone, dataset and a finished 2-epoch run (a few seconds on 2 cores)."""
    from peft_puma.training import load_config, train

    root = tmp_path_factory.mktemp("search")
    backbone, dataset = make_backbone(str(root / "vit")), make_dataset(str(root / "data"))
    run = str(root / "run")
    train(load_config(None, tiny_config(backbone, dataset, output_dir=run)))
    return {"backbone": backbone, "dataset": dataset, "run": run, "root": str(root)}


@pytest.fixture(scope="session")
def photos(tiny) -> str:
    """The test split's images as PNG files, ``<dataset>/<label>_<row>.png`` (39 files)."""
    import datasets

    folder = os.path.join(tiny["root"], "photos")
    test = datasets.load_from_disk(tiny["dataset"])["test"]
    for row, example in enumerate(test):
        os.makedirs(os.path.join(folder, example["dataset"]), exist_ok=True)
        example["image"].save(os.path.join(folder, example["dataset"], f"{example['label']}_{row:02d}.png"))
    return folder


@pytest.fixture(scope="session")
def test_index(tiny) -> str:
    """A flat index of the tiny test split, built with the finished run's adapter."""
    output = os.path.join(tiny["root"], "test_index")
    argv = ["index", "--adapter", tiny["run"], "--dataset", tiny["dataset"], "--split", "test", "--output_dir", output]
    assert main(argv) == 0
    return output


@pytest.fixture
def run_copy(tiny, tmp_path) -> str:
    """A copy of the finished run that a test may change."""
    copy = str(tmp_path / "run_copy")
    shutil.copytree(tiny["run"], copy)
    return copy


def error_line(err: str) -> str:
    """The single ``error: ...`` line of a failed command (and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
