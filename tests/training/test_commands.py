"""The companion commands: ``peft_puma.evaluate`` (adapter + data -> table) and ``peft_puma.embed`` (images ->
embeddings file), from the command line and from Python; ``peft_puma.train`` exit codes."""

from __future__ import annotations

import json
import os

import torch
from PIL import Image

from peft_puma import embed, evaluate, train
from peft_puma.inference.embedding import embed_folder
from peft_puma.inference.embeddings_file import load_embeddings
from peft_puma.runs.checkpoints import complete_checkpoints

from .conftest import expected_results_file, train_in_subprocess, write_config


def test_evaluate_command_reproduces_the_training_results(finished_run, tmp_path, capsys):
    config, result = finished_run
    output = str(tmp_path / "results.json")
    argv = ["--adapter", config.output_dir, "--dataset_path", config.dataset_path, "--eval_ks", "1", "2", "4"]
    assert evaluate.main([*argv, "--output", output]) == 0
    printed = capsys.readouterr().out
    assert f"Evaluation of {config.output_dir} (test split)" in printed
    assert "| stripes | colours | shop | Unified | Harmonic |" in printed
    with open(output) as handle:
        saved = json.load(handle)
    assert saved == expected_results_file(config, result)
    with open(os.path.join(config.output_dir, "results.json")) as handle:
        assert saved == json.load(handle)  # the trainer's own results file


def test_evaluate_split_validation_scores_the_validation_rows(finished_run, tiny_assets, tmp_path, capsys):
    config, _ = finished_run
    output = str(tmp_path / "validation.json")
    data = ["--dataset_path", tiny_assets["dataset_with_validation"], "--split", "validation", "--ks", "1"]
    assert evaluate.main(["--adapter", config.output_dir, *data, "--output", output]) == 0
    assert f"Evaluation of {config.output_dir} (validation split)" in capsys.readouterr().out
    with open(output) as handle:
        saved = json.load(handle)
    assert saved["split"] == "validation" and saved["unified"]["num_queries"] == 8 + 8 + 4  # validation queries
    assert evaluate.main(["--zero_shot", "--backbone", tiny_assets["backbone"], *data]) == 0
    assert "Evaluation of zero-shot backbone (validation split)" in capsys.readouterr().out
    zero_shot = evaluate.evaluate_adapter(
        None,
        {"dataset_path": tiny_assets["dataset_with_validation"]},
        backbone=tiny_assets["backbone"],
        zero_shot=True,
        ks=(1,),
        split="validation",
    )
    assert zero_shot["unified"]["num_queries"] == 20


def test_evaluate_from_python_zero_shot_and_a_dataset_subset(finished_run, tiny_assets):
    config, _ = finished_run
    data = {"dataset_path": config.dataset_path, "datasets": ["shop"]}
    zero_shot = evaluate.evaluate_adapter(None, data, backbone=tiny_assets["backbone"], zero_shot=True, ks=(1,))
    assert list(zero_shot["per_dataset"]) == ["shop"]
    assert zero_shot["unified"]["num_queries"] == 6  # In-shop style: 2 queries per class, 3 classes


def test_embed_command_writes_dataset_embeddings_with_their_rows(finished_run, tmp_path):
    config, result = finished_run
    path = str(tmp_path / "test.safetensors")
    assert embed.main(["--adapter", config.output_dir, "--dataset", config.dataset_path, "--output", path]) == 0
    saved = load_embeddings(path)
    assert saved["embeddings"].shape == (39, 16) and saved["labels"].shape == (39,)
    assert saved["datasets"][:1] == ["stripes"] and saved["roles"][-1] == "gallery"
    torch.testing.assert_close(saved["embeddings"].norm(dim=1), torch.ones(39))


def test_embed_a_folder_from_python(finished_run, tmp_path):
    config, result = finished_run
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 30), (200, 10, 10)).save(folder / "a.png")
    Image.new("L", (16, 16), 90).save(folder / "sub" / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    from peft_puma.data.transforms import make_eval_transform
    from peft_puma.inference.loading import load_for_inference

    model, processor, size = load_for_inference(config.output_dir)
    embeddings, paths = embed_folder(model, str(folder), make_eval_transform(size, image_processor=processor))
    assert paths == ["a.png", os.path.join("sub", "b.jpg")]
    assert embeddings.shape == (2, 16)


def test_train_command_exit_codes(tiny_values, tmp_path, capsys):
    argv = [f"--{key}={json.dumps(value)}" for key, value in tiny_values.items()]
    assert train.main([*argv, "--loss=hinge"]) == train.EXIT_INVALID
    assert "Unknown loss 'hinge'" in capsys.readouterr().err
    # The exit status of the real process, with the loss of step 6 made NaN in it (tests/training/fault_runner.py).
    stopped = train_in_subprocess(write_config(str(tmp_path / "config.yaml"), tiny_values), faults="nan_at_step:6")
    assert stopped.returncode == train.EXIT_NON_FINITE, stopped.stderr[-2000:]
    assert "The loss became nan at step 6" in stopped.stderr and "checkpoint-4" in stopped.stderr
    assert [step for step, _ in complete_checkpoints(tiny_values["output_dir"])] == [4]


def test_push_to_hub_uploads_a_copy_of_the_adapter_folder_without_checkpoints(finished_run, monkeypatch):
    from peft_puma.training import report

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, exist_ok, private=False):
            calls.append(("create", repo_id, exist_ok, private))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs, sorted(os.listdir(kwargs["folder_path"]))))

    monkeypatch.setattr(report, "HfApi", FakeApi)
    config, _ = finished_run
    assert report.push_folder(config.output_dir, "me/puma-tiny") == "https://huggingface.co/me/puma-tiny"
    assert calls[0] == ("create", "me/puma-tiny", True, False)
    _, upload, files = calls[1]
    assert upload["folder_path"] != config.output_dir  # a copy made fit to publish (tests/training/test_hub_habits.py)
    assert "adapter_model.safetensors" in files and not {"checkpoints", "logs", "peft_puma_training.json"} & set(files)


def test_evaluate_writes_retrieval_examples_and_never_over_a_foreign_file(finished_run, tmp_path, capsys):
    from peft_puma.evaluation.grid import DEFAULT_THUMBNAIL, grid_size

    config, _ = finished_run
    sheet = tmp_path / "examples.png"
    argv = ["--adapter", config.output_dir, "--dataset_path", config.dataset_path, "--examples", str(sheet)]
    assert evaluate.main(argv) == 0
    assert f"retrieval examples written to {sheet}" in capsys.readouterr().out
    with Image.open(sheet) as image:  # 2 queries for each of the 3 datasets, each with its top 5
        assert image.size == grid_size(6, 6, DEFAULT_THUMBNAIL)
    mine = tmp_path / "mine.png"
    Image.new("RGB", (4, 4)).save(mine)
    assert evaluate.main([*argv[:-1], str(mine)]) == 2
    assert "is not a grid written by peft_puma" in capsys.readouterr().err
