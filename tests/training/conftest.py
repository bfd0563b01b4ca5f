"""Shared fixtures of the training tests: one tiny backbone and datasets (without and with a validation split) per
session, and a subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from . import fault_runner
from .fixtures import make_backbone, make_dataset, tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "backbone": make_backbone(str(root / "vit")),
        "dataset": make_dataset(str(root / "data")),
        "dataset_with_validation": make_dataset(str(root / "data_validation"), validation=True),
    }


@pytest.fixture
def tiny_values(tiny_assets, tmp_path) -> dict:
    """Config keys of a tiny run writing into this test's tmp_path/run."""
    return tiny_config(tiny_assets["backbone"], tiny_assets["dataset"], output_dir=str(tmp_path / "run"))


@pytest.fixture(scope="session")
def finished_run(tiny_assets, tmp_path_factory):
    """``(config, TrainResult)`` of one finished tiny run of 4 epochs (32 steps) with TensorBoard logging."""
    from peft_puma.training import load_config, train

    output_dir = str(tmp_path_factory.mktemp("e2e") / "run")
    values = tiny_config(tiny_assets["backbone"], tiny_assets["dataset"], output_dir=output_dir)
    config = load_config(None, {**values, "epochs": 4, "report_to": ["tensorboard"], "eval_every_epochs": 2})
    return config, train(config)


def expected_results_file(config, result) -> dict:
    """What the finished tiny run's ``results.json`` (and ``evaluate --output`` on its test split) must hold, as JSON
    reads it back: the scores, the split, the data, the fingerprint the run file recorded and this checkout's commit."""
    import json

    from peft_puma.runs.run_file import read_run_file
    from peft_puma.source_commit import source_commit

    expected = {
        **result.results,
        "split": "test",
        "data_source": {"dataset_path": config.dataset_path},
        "backbone_fingerprint": read_run_file(config.output_dir).backbone_fingerprint,
        "training_seed": config.seed,
        "commit": source_commit(),
    }
    return json.loads(json.dumps(expected))


def run_module(args: list[str], env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python <args>`` (or a launcher) from the repository root, offline, and capture its output."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(args, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def train_in_subprocess(config_path: str, *extra: str, faults: str | None = None, env: dict[str, str] | None = None):
    """``python -m peft_puma.train --config config_path *extra``; with ``faults`` (``"kind:K"``), the same run under
    ``tests/training/fault_runner.py``, which injects those faults in the child process."""
    train_args = ["--config", config_path, *extra]
    if faults is None:
        return run_module([sys.executable, "-m", "peft_puma.train", *train_args], env=env)
    return run_module(fault_runner.command(faults, *train_args), env=env)


__all__ = ["run_module", "train_in_subprocess", "tiny_config", "write_config"]
