"""Crash safety and resumption: a run killed mid-way (or mid-save) and resumed ends with the same adapter as an
uninterrupted run with the same seed (CPU, deterministic), and a half-written checkpoint is never loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from peft_puma.errors import IncompatibleCheckpointError, WriteFailedError
from peft_puma.runs.checkpoints import complete_checkpoints, read_trainer_state
from peft_puma.training import load_config, train

from . import fault_runner
from .conftest import REPO, train_in_subprocess
from .fixtures import tiny_config, write_config

EPOCHS = 3  # 24 steps of 8 rows; checkpoints every 4 steps


@pytest.fixture(scope="module")
def reference(tiny_assets, tmp_path_factory):
    """The adapter of an uninterrupted run."""
    output_dir = str(tmp_path_factory.mktemp("reference") / "run")
    values = tiny_config(tiny_assets["backbone"], tiny_assets["dataset"], output_dir=output_dir, epochs=EPOCHS)
    train(load_config(None, values))
    return load_file(os.path.join(output_dir, "adapter_model.safetensors"))


@pytest.fixture
def run_config(tiny_assets, tmp_path) -> tuple[str, str]:
    output_dir = str(tmp_path / "run")
    values = tiny_config(tiny_assets["backbone"], tiny_assets["dataset"], output_dir=output_dir, epochs=EPOCHS)
    return write_config(str(tmp_path / "config.yaml"), values), output_dir


def _resume_and_compare(config_path: str, output_dir: str, reference: dict[str, torch.Tensor]) -> None:
    result = train(load_config(config_path, ["--resume"]))
    assert result.global_step == 8 * EPOCHS
    resumed = load_file(os.path.join(output_dir, "adapter_model.safetensors"))
    assert set(resumed) == set(reference)
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_killed_run_resumes_to_the_uninterrupted_adapter(run_config, reference):
    config_path, output_dir = run_config
    killed = train_in_subprocess(config_path, faults="exit_after_step:10")  # mid-epoch 2
    assert killed.returncode == fault_runner.EXIT_CODE, killed.stderr[-2000:]
    assert [step for step, _ in complete_checkpoints(output_dir)] == [4, 8]
    assert not os.path.exists(os.path.join(output_dir, "adapter_model.safetensors"))
    _resume_and_compare(config_path, output_dir, reference)


def test_a_crash_while_saving_leaves_no_loadable_checkpoint(run_config, reference):
    config_path, output_dir = run_config
    crashed = train_in_subprocess(config_path, faults="exit_in_save:12")
    assert crashed.returncode == fault_runner.EXIT_CODE, crashed.stderr[-2000:]
    staging = os.path.join(output_dir, "checkpoints", ".checkpoint-12.tmp")
    assert {"model.safetensors", "trainer_state.json"} <= set(os.listdir(staging))  # written, never renamed into place
    assert [step for step, _ in complete_checkpoints(output_dir)] == [4, 8]
    with pytest.raises(IncompatibleCheckpointError, match="not a complete checkpoint"):
        read_trainer_state(staging)  # even named explicitly, the half-written folder is refused
    _resume_and_compare(config_path, output_dir, reference)  # from checkpoint-8
    assert ".checkpoint-12.tmp" not in os.listdir(os.path.join(output_dir, "checkpoints"))


def test_a_failing_save_leaves_no_loadable_checkpoint(run_config, reference, monkeypatch):
    """In-process: the disk fills up while checkpoint 12 is fsynced; the error propagates, 8 stays the newest."""
    from peft_puma.runs import checkpoints as checkpoint

    config_path, output_dir = run_config
    fsync_file = checkpoint._fsync_file

    def disk_full_at_12(path: str) -> None:
        if os.path.basename(os.path.dirname(path)) == ".checkpoint-12.tmp":
            raise OSError(28, "No space left on device")
        fsync_file(path)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "_fsync_file", disk_full_at_12)
        with pytest.raises(WriteFailedError, match="No space left on device.*checkpoint-8 \\(step 8\\), is intact"):
            train(load_config(config_path, []))
    assert [step for step, _ in complete_checkpoints(output_dir)] == [4, 8]
    _resume_and_compare(config_path, output_dir, reference)


def test_sigkill_at_any_moment_then_resume(run_config, reference):
    config_path, output_dir = run_config
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "peft_puma.train", "--config", config_path]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not complete_checkpoints(output_dir) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert complete_checkpoints(output_dir)
    _resume_and_compare(config_path, output_dir, reference)


def test_resume_without_checkpoint_starts_afresh(run_config, reference):
    config_path, output_dir = run_config
    _resume_and_compare(config_path, output_dir, reference)
