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


# ------------------------------------------------------------------------------------------- the data's identity
def _argv(values: dict) -> list[str]:
    import json

    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def _stopped_run(values: dict) -> None:
    """A run with its checkpoint at step 4 and no results, as a run stopped there leaves it."""
    from peft_puma import train as train_command

    assert train_command.main(_argv({**values, "max_steps": 4, "save_every_steps": 4})) == 0
    os.remove(os.path.join(values["output_dir"], "results.json"))
    assert [step for step, _ in complete_checkpoints(values["output_dir"])] == [4]


def _resume(values: dict, capsys, data: str) -> tuple[int, str, str]:
    from peft_puma import train as train_command

    capsys.readouterr()
    status = train_command.main(_argv({**values, "max_steps": 8, "dataset_path": data, "resume": True}))
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()[-1] if captured.err.strip() else ""


def test_resume_refuses_another_dataset_of_the_same_shape(tiny_assets, tmp_path, capsys):
    """Other images, the same per-domain counts: the file listing's fingerprint differs, not the sizes."""
    from .fixtures import make_dataset

    values = tiny_config(tiny_assets["backbone"], tiny_assets["dataset"], output_dir=str(tmp_path / "run"), epochs=2)
    _stopped_run(values)
    status, _, line = _resume(values, capsys, make_dataset(str(tmp_path / "other_data"), seed=1))
    assert status == 2 and "data files (names and sizes of the source's files)" in line, line
    assert f"The checkpoint {values['output_dir']}/checkpoints/checkpoint-4 was written by a run" in line
    assert "data_sizes" not in line


def test_resume_refuses_a_collection_of_other_classes_and_accepts_a_copy_of_the_same(tiny_assets, tmp_path, capsys):
    """A folder collection with its classes renamed (same counts): the split record's classes differ. A copy of the
    same collection elsewhere (the paths may differ between machines) resumes."""
    import shutil

    from .fixtures import make_collection_tree

    tree = make_collection_tree(str(tmp_path / "photos"))
    values = tiny_config(tiny_assets["backbone"], tree, output_dir=str(tmp_path / "run"), epochs=10)
    _stopped_run(values)
    renamed = tmp_path / "renamed"
    shutil.copytree(tree, renamed)
    for domain in os.listdir(renamed):
        for name in os.listdir(renamed / domain):
            os.rename(renamed / domain / name, renamed / domain / f"other_{name}")
    status, _, line = _resume(values, capsys, str(renamed))
    assert status == 2 and "data classes (the split record's classes)" in line, line
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    status, out, _ = _resume(values, capsys, str(copy))
    assert status == 0 and "Resumed from" in out
