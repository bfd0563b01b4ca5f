"""Faults and look-alikes: a run killed or interrupted at any phase resumes to the same bytes; one writer per run
folder; a full disk, a read-only folder, a damaged backbone or checkpoint, another backbone of the same shape and
impossible numbers are each one line and an exit status (docs/training.md, "Exit status")."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess

import pytest

from peft_puma import embed, evaluate, train
from peft_puma.errors import FolderInUseError
from peft_puma.runs.checkpoints import complete_checkpoints
from peft_puma.runs.layout import LOCK_FILE
from peft_puma.runs.lock import FolderLock
from peft_puma.training import load_config
from peft_puma.training import train as train_run

from . import fault_runner
from .conftest import train_in_subprocess
from .fixtures import make_backbone, tiny_config, write_config

EPOCHS = 3  # 24 steps of 8 rows; checkpoints every 4 steps
ADAPTER = "adapter_model.safetensors"


def _error_line(err: str, prefix: str = "error: ") -> str:
    lines = [line for line in err.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def reference(tiny_assets, tmp_path_factory) -> bytes:
    """The adapter file of an uninterrupted run, byte for byte."""
    output_dir = str(tmp_path_factory.mktemp("reference") / "run")
    values = tiny_config(tiny_assets["backbone"], tiny_assets["dataset"], output_dir=output_dir, epochs=EPOCHS)
    train_run(load_config(None, values))
    with open(os.path.join(output_dir, ADAPTER), "rb") as handle:
        return handle.read()


@pytest.fixture
def run_config(tiny_assets, tmp_path) -> tuple[str, str]:
    output_dir = str(tmp_path / "run")
    values = tiny_config(tiny_assets["backbone"], tiny_assets["dataset"], output_dir=output_dir, epochs=EPOCHS)
    return write_config(str(tmp_path / "config.yaml"), values), output_dir


# ------------------------------------------------------------------------------------------ cut short, then resumed
PHASES = [
    ("before_step:1", "start-up (before the first step)"),
    ("mid_step:6", "between a step's forward and its update"),
    ("in_save:8", "while a checkpoint is written"),
    ("in_final_eval:1", "during the final evaluation"),
    ("in_final_save:1", "during the final save"),
]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "interrupt"])
@pytest.mark.parametrize(("phase", "where"), PHASES, ids=[phase.split(":")[0] for phase, _ in PHASES])
def test_a_run_cut_short_at_any_phase_resumes_to_the_same_bytes(how, phase, where, run_config, reference):
    """kill -9 (a hard exit) or Ctrl-C at each phase, then --resume: the adapter is byte-identical to an
    uninterrupted run's. Ctrl-C is one line (what was kept, how to continue) and exit status 130."""
    config_path, output_dir = run_config
    cut = train_in_subprocess(config_path, faults=f"{how}_{phase}")
    if how == "exit":
        assert cut.returncode == fault_runner.EXIT_CODE, cut.stderr[-3000:]
    else:
        assert cut.returncode == 130, cut.stderr[-3000:]
        line = _error_line(cut.stderr, "interrupted: ")
        assert ("continue with --resume" in line) if complete_checkpoints(output_dir) else ("nothing to resume" in line)
    assert not os.path.exists(os.path.join(output_dir, "results.json")), where
    train_run(load_config(config_path, ["--resume"]))
    with open(os.path.join(output_dir, ADAPTER), "rb") as handle:
        assert handle.read() == reference, f"cut {where} ({how}), then resumed"


# ----------------------------------------------------------------------------------------------- one writer per folder
def test_a_second_training_into_a_folder_in_use_exits_2_naming_the_other(tiny_values, capsys):
    os.makedirs(tiny_values["output_dir"])
    with FolderLock(os.path.join(tiny_values["output_dir"], LOCK_FILE), "another training run"):
        assert train.main(_argv(tiny_values)) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"is in use by another training run (process {os.getpid()} on " in line and "choose another" in line
    assert os.listdir(tiny_values["output_dir"]) == [LOCK_FILE]  # nothing of the second run was written


def test_the_lock_is_released_by_the_end_of_its_process_and_a_stale_record_is_explained(tmp_path, capsys):
    path = str(tmp_path / LOCK_FILE)
    first = FolderLock(path, "a training run").acquire()
    with pytest.raises(FolderInUseError, match=f"process {os.getpid()}"):
        FolderLock(path, "a training run").acquire()
    first.release()
    FolderLock(path, "a training run").acquire().release()  # a clean release leaves nothing stale
    with open(path, "w", encoding="utf-8") as handle:  # what a killed holder leaves: its record, no lock
        json.dump({"pid": 4242, "host": "h", "since": "2026-12-04 10:00:00"}, handle)
    taken = FolderLock(path, "a training run").acquire()
    assert "process 4242 on h" in taken.stale_note() and "ended without releasing it" in taken.stale_note()
    taken.release()


def test_a_hard_killed_training_leaves_no_lock_behind(run_config):
    config_path, output_dir = run_config
    killed = train_in_subprocess(config_path, faults="exit_after_step:5")
    assert killed.returncode == fault_runner.EXIT_CODE
    again = train_in_subprocess(config_path, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ended without releasing it (killed or crashed)" in again.stdout + again.stderr


def _argv(values: dict, *extra: str) -> list[str]:
    argv = []
    for key, value in values.items():
        argv += [f"--{key}", json.dumps(value) if isinstance(value, dict | list) else str(value)]
    return [*argv, *extra]


# -------------------------------------------------------------------------------------- disk full, read-only folders
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_says_so(run_config, reference, monkeypatch, capsys):
    """torch reports ENOSPC from its zip writer as a RuntimeError deep inside; the command says it in one line."""
    from peft_puma.runs import checkpoints

    config_path, output_dir = run_config
    write_json = checkpoints._write_json

    def full_at_12(path, value):
        if ".checkpoint-12.tmp" in path:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0: file write failed")
        write_json(path, value)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "_write_json", full_at_12)
        assert train.main(["--config", config_path]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "Writing the checkpoint of step 12" in line and "file write failed" in line and "MB free there" in line
    assert "checkpoint-8 (step 8), is intact" in line and "--resume" in line
    assert [step for step, _ in complete_checkpoints(output_dir)] == [4, 8]
    assert ".checkpoint-12.tmp" not in os.listdir(os.path.join(output_dir, "checkpoints"))
    assert train.main(["--config", config_path, "--resume"]) == 0
    with open(os.path.join(output_dir, ADAPTER), "rb") as handle:
        assert handle.read() == reference


def test_a_full_disk_during_the_final_save_keeps_the_final_checkpoint(run_config, monkeypatch, capsys):
    from peft_puma.training import report

    config_path, output_dir = run_config

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(output_dir, ADAPTER))

    with monkeypatch.context() as patch:
        patch.setattr(report, "save_trained", full)
        assert train.main(["--config", config_path]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "Saving the trained adapter" in line and "No space left on device" in line
    assert "checkpoint-24 is intact" in line and "--resume" in line
    assert train.main(["--config", config_path, "--resume"]) == 0
    assert os.path.isfile(os.path.join(output_dir, "results.json"))


def test_embed_on_a_full_disk_is_one_line_and_writes_nothing(finished_run, tiny_assets, tmp_path, monkeypatch, capsys):
    from peft_puma.inference import embeddings_file

    def full(tensors, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(embeddings_file, "save_file", full)
    output = str(tmp_path / "test.safetensors")
    argv = ["--adapter", finished_run[0].output_dir, "--dataset", tiny_assets["dataset"], "--output", output]
    assert embed.main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"Writing the embeddings file {output!r} failed (No space left on device" in line
    assert "nothing was written" in line and os.listdir(tmp_path) == []


@pytest.fixture
def tmpfs(tmp_path):
    """A real small file system mounted under tmp_path (root with CAP_SYS_ADMIN only; else the test is skipped)."""
    mounted = []

    def mount(name: str, size: str, *options: str) -> str:
        folder = tmp_path / name
        folder.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(folder)]
        if shutil.which("mount") is None or subprocess.run(command, capture_output=True).returncode != 0:
            pytest.skip("mounting a tmpfs needs root and CAP_SYS_ADMIN")
        mounted.append(folder)
        return str(folder)

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_training_into_a_read_only_file_system_is_one_line(tiny_values, tmpfs, capsys):
    """Root ignores a folder's write permission, but not a read-only file system."""
    folder = tmpfs("readonly", "1m", "ro")
    values = {**tiny_values, "output_dir": os.path.join(folder, "run")}
    assert train.main(_argv(values)) == 2
    line = _error_line(capsys.readouterr().err)
    assert "cannot write" in line and "Read-only file system" in line and os.path.join(folder, "run") in line


def test_a_real_full_disk_during_training_is_one_line(tiny_values, tmpfs, capsys):
    folder = tmpfs("small", "96k")
    values = {**tiny_values, "output_dir": os.path.join(folder, "run")}
    assert train.main(_argv(values)) == 2
    line = _error_line(capsys.readouterr().err)
    assert "No space left on device" in line or "write failed" in line or "MB free there" in line, line


# ------------------------------------------------------------------------------------- damaged or look-alike inputs
def test_a_checkpoint_missing_a_file_falls_back_to_the_previous_one(run_config, reference, capsys):
    config_path, output_dir = run_config
    killed = train_in_subprocess(config_path, faults="exit_after_step:10")
    assert killed.returncode == fault_runner.EXIT_CODE
    newest = complete_checkpoints(output_dir)[-1][1]
    os.remove(os.path.join(newest, "optimizer.bin"))
    assert train.main(["--config", config_path, "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"The checkpoint {newest} lacks optimizer.bin" in out and "Falling back to the previous" in out
    with open(os.path.join(output_dir, ADAPTER), "rb") as handle:
        assert handle.read() == reference


def test_an_adapter_on_another_backbone_of_the_same_shape_is_refused(finished_run, tiny_assets, tmp_path, capsys):
    other = make_backbone(str(tmp_path / "other_vit"), seed=1)  # same config, other weights
    data = ["--dataset_path", tiny_assets["dataset"]]
    assert evaluate.main(["--adapter", finished_run[0].output_dir, "--backbone", other, *data]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"The backbone {other!r} holds other weights than the adapter" in line and "--allow_other_backbone" in line
    output = str(tmp_path / "e.safetensors")
    argv = ["--adapter", finished_run[0].output_dir, "--backbone", other, "--dataset", tiny_assets["dataset"]]
    assert embed.main([*argv, "--output", output]) == 2
    assert "holds other weights" in _error_line(capsys.readouterr().err) and not os.path.exists(output)
    assert embed.main([*argv, "--output", output, "--allow_other_backbone"]) == 0


def test_a_run_folder_finds_its_backbone_from_any_working_directory(finished_run, tiny_assets, tmp_path):
    """The run file records a local backbone's folder (absolute and relative to the run), not only as typed."""
    run_dir = finished_run[0].output_dir
    with open(os.path.join(run_dir, "peft_puma_training.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["backbone_path"] == os.path.abspath(tiny_assets["backbone"])
    moved = tmp_path / "moved"
    shutil.copytree(os.path.dirname(run_dir), moved / "runs")
    shutil.copytree(tiny_assets["backbone"], moved / "vit")
    relative_record = {**record, "backbone": "vit", "backbone_path": "/nowhere/vit", "backbone_from_run": "../../vit"}
    run_copy = moved / "runs" / os.path.basename(run_dir)
    (run_copy / "peft_puma_training.json").write_text(json.dumps(relative_record))
    cwd = os.getcwd()
    os.chdir(tmp_path)  # "vit" does not exist here: the folder beside the run is used
    try:
        result = evaluate.evaluate_adapter(str(run_copy), {"dataset_path": tiny_assets["dataset"]}, progress=False)
    finally:
        os.chdir(cwd)
    assert 0 <= result["unified"]["recall@1"] <= 1


def test_a_mistyped_local_backbone_folder_says_it_does_not_exist(tiny_values, tmp_path, capsys):
    missing = os.path.join(os.path.dirname(tiny_values["backbone"]), "vitt")
    assert train.main(_argv({**tiny_values, "backbone": missing})) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"The backbone folder {missing!r} does not exist" in line and "huggingface" not in line.lower()


def test_a_damaged_backbone_is_one_line(tiny_values, tmp_path, capsys):
    damaged = shutil.copytree(tiny_values["backbone"], tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert train.main(_argv({**tiny_values, "backbone": str(damaged)})) == 2
    assert "The backbone weights of" in _error_line(capsys.readouterr().err)
    (damaged / "config.json").write_text("{not json")
    assert train.main(_argv({**tiny_values, "backbone": str(damaged)})) == 2
    assert "config.json is not valid JSON" in _error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------ impossible numbers
@pytest.mark.parametrize(
    ("command", "argv", "words"),
    [
        (embed, ["--batch_size", "-1"], "--batch_size must be at least 1; got -1."),
        (embed, ["--batch_size", "0"], "--batch_size must be at least 1; got 0."),
        (embed, ["--image_size", "3"], "--image_size must be at least 16; got 3."),
        (evaluate, ["--batch_size", "0"], "--batch_size must be at least 1; got 0."),
        (evaluate, ["--ks", "1", "0"], "--eval_ks must be at least 1; got 0."),  # --ks: its old spelling
        (evaluate, ["--eval_ks", "0"], "--eval_ks must be at least 1; got 0."),
    ],
)
def test_impossible_numbers_are_refused_before_any_work(command, argv, words, tmp_path, capsys):
    base = ["--zero_shot", "--backbone", "b"]
    if command is embed:
        base += ["--images", str(tmp_path), "--output", str(tmp_path / "e.safetensors")]
    else:
        base += ["--dataset_path", str(tmp_path)]
    assert command.main([*base, *argv]) == 2
    assert _error_line(capsys.readouterr().err) == f"error: {words}"


def test_an_image_size_below_a_patch_is_refused_before_training(tiny_values, capsys):
    assert train.main(_argv({**tiny_values, "image_size": 3})) == 2
    assert "image_size must be at least 16 pixels" in _error_line(capsys.readouterr().err)


def test_data_and_run_in_one_folder_is_refused(tiny_values, tmp_path, capsys):
    folder = str(tmp_path / "both")
    values = {key: value for key, value in tiny_values.items() if key != "dataset_path"}
    assert train.main(_argv({**values, "uml_mini_dir": folder, "output_dir": folder})) == 2
    assert "output_dir" in (line := _error_line(capsys.readouterr().err)) and "overlap" in line
    assert not os.path.exists(folder)


def test_eval_ks_larger_than_a_gallery_is_refused_before_the_backbone_loads(tiny_values, capsys):
    values = {**tiny_values, "eval_ks": [1, 500], "backbone": "never/loaded"}
    assert train.main(_argv(values)) == 2
    line = _error_line(capsys.readouterr().err)
    assert "k = 500 exceeds the" in line and "gallery rows" in line
    assert not os.path.exists(os.path.join(tiny_values["output_dir"], ADAPTER))


def test_an_image_size_the_backbone_cannot_embed_is_refused_before_training(tiny_values, capsys):
    assert train.main(_argv({**tiny_values, "image_size": 32})) == 2  # the tiny ViT embeds 16 px
    line = _error_line(capsys.readouterr().err)
    assert "image_size 32 differs from the 16 px this vit backbone embeds" in line


def test_a_timm_format_for_a_transformers_folder_names_the_key_to_change(tiny_values, capsys):
    assert train.main(_argv({**tiny_values, "backbone_format": "timm"})) == 2
    assert "set backbone_format: auto" in _error_line(capsys.readouterr().err)


def test_a_hub_id_that_is_not_cached_offline_says_so(tiny_values, capsys):
    assert train.main(_argv({**tiny_values, "backbone": "nobody-here/no-such-vit"})) == 2
    line = _error_line(capsys.readouterr().err)
    assert "the Hub is offline (HF_HUB_OFFLINE=1) with no cached copy" in line


def test_a_hand_edited_scale_in_a_runs_adapter_config_is_refused_naming_the_trained_one(finished_run, tmp_path, capsys):
    """scale shapes no tensor, so only the run file can tell that adapter_config.json's was changed after training."""
    config, _ = finished_run
    run = tmp_path / "edited_run"
    shutil.copytree(config.output_dir, run)
    adapter_config = run / "adapter_config.json"
    values = json.loads(adapter_config.read_text(encoding="utf-8"))
    trained = values["scale"]
    adapter_config.write_text(json.dumps({**values, "scale": trained * 2}), encoding="utf-8")
    argv = ["--adapter", str(run), "--dataset_path", config.dataset_path, "--output", str(tmp_path / "r.json")]
    assert evaluate.main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"says scale {trained * 2!r} in adapter_config.json, but its run trained it with scale {trained!r}" in line
    assert not (tmp_path / "r.json").exists()
    adapter_config.write_text(json.dumps(values), encoding="utf-8")  # the trained value loads again
    assert evaluate.main(argv) == 0
