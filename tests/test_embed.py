"""``python -m peft_puma.embed --images``: unreadable image files (``--on_error stop|skip``, ``embed_folder``'s
``on_error``, ``check_images``) and the input / output mistakes caught before the model loads.

Everything runs zero-shot on the tiny random ViT of the training fixtures (16 px), so each command takes a second.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from training.conftest import run_module
from training.fixtures import make_backbone

from peft_puma import embed
from peft_puma.data.images import check_folder, check_image
from peft_puma.errors import InvalidInputError
from peft_puma.inference.embedding import embed_folder
from peft_puma.inference.embeddings_file import load_embeddings

GOOD = ["a.png", "b.png", os.path.join("sub", "c.png")]
BAD = {"bad.png": "not an image file", "cut.jpg": "truncated"}  # file -> part of its reason


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    return make_backbone(str(tmp_path_factory.mktemp("embed") / "vit"))


def _good_images(folder) -> None:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(GOOD):
        Image.new("RGB", (20 + index, 18), (60 * index, 200, 30)).save(folder / name)


def _bad_images(folder) -> None:
    (folder / "bad.png").write_text("this is a text file, not a PNG\n")
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    data = buffer.getvalue()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    with Image.open(folder / "cut.jpg") as image:  # the header is intact: only a full decode finds the damage
        assert image.size == (64, 64)


@pytest.fixture
def mixed(tmp_path):
    folder = tmp_path / "photos"
    _good_images(folder)
    _bad_images(folder)
    return folder


def _argv(backbone: str, folder, output, *extra: str) -> list[str]:
    return ["--zero_shot", "--backbone", backbone, "--images", str(folder), "--output", str(output), *extra]


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_stop_is_the_default_and_names_the_unreadable_file(backbone, mixed, tmp_path, capsys):
    output = tmp_path / "out" / "photos.safetensors"
    assert embed.main(_argv(backbone, mixed, output)) == 2
    line = _error_line(capsys.readouterr().err)
    assert os.path.join(str(mixed), "bad.png") in line and BAD["bad.png"] in line
    assert "1 more unreadable" in line and "--on_error skip" in line
    assert not output.exists() and not output.parent.exists()
    assert embed.main(_argv(backbone, mixed, output, "--on_error", "stop")) == 2
    assert not output.exists()


def test_skip_embeds_the_readable_images_and_lists_the_skipped_ones(backbone, mixed, tmp_path, capsys):
    output = tmp_path / "photos.safetensors"
    assert embed.main(_argv(backbone, mixed, output, "--on_error", "skip")) == 0
    captured = capsys.readouterr()
    assert "skipped 2 of 5 image file(s)" in captured.err
    for name, reason in BAD.items():
        assert any(os.path.join(str(mixed), name) in line and reason in line for line in captured.err.splitlines())
    assert "3 embeddings of size" in captured.out and "2 unreadable image(s) skipped" in captured.out
    saved = load_embeddings(str(output))
    assert saved["paths"] == GOOD
    assert [item["path"] for item in saved["skipped"]] == sorted(BAD)
    assert all(BAD[item["path"]] in item["reason"] for item in saved["skipped"])
    # The rows are exactly those of a folder holding only the good images (where nothing is skipped).
    clean_folder, clean_output = tmp_path / "clean", tmp_path / "clean.safetensors"
    _good_images(clean_folder)
    assert embed.main(_argv(backbone, clean_folder, clean_output)) == 0
    clean = load_embeddings(str(clean_output))
    assert clean["paths"] == GOOD and clean["skipped"] == []
    torch.testing.assert_close(saved["embeddings"], clean["embeddings"])


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_folder_of_only_bad_images_exits_2_and_writes_nothing(backbone, tmp_path, capsys, on_error):
    folder, output = tmp_path / "photos", tmp_path / "photos.safetensors"
    folder.mkdir()
    _bad_images(folder)
    assert embed.main(_argv(backbone, folder, output, "--on_error", on_error)) == 2
    err = capsys.readouterr().err
    line = _error_line(err)
    assert "None of the 2 image file(s)" in line and "bad.png" in line and "cut.jpg" in line
    assert "skipped 2 of 2" in err  # the list with the reasons comes first
    assert not output.exists()


def test_check_images_and_embed_folder_from_python(backbone, mixed):
    from peft_puma.data.transforms import make_eval_transform
    from peft_puma.inference.loading import load_for_inference

    good, bad = check = check_folder(str(mixed))
    assert good == GOOD
    assert [item.path for item in bad] == sorted(BAD)
    assert all(BAD[item.path] in item.reason and "\n" not in item.reason for item in bad)
    model, processor, size = load_for_inference(None, backbone, zero_shot=True)
    transform = make_eval_transform(size, image_processor=processor)
    with pytest.raises(InvalidInputError, match=r"bad\.png.*on_error=\"skip\""):
        embed_folder(model, str(mixed), transform, progress=False)
    embeddings, paths = embed_folder(model, str(mixed), transform, on_error="skip", progress=False)
    assert paths == GOOD and embeddings.shape[0] == 3
    again, same = embed_folder(model, str(mixed), transform, on_error="skip", checked=check, progress=False)
    torch.testing.assert_close(again, embeddings)
    with pytest.raises(ValueError, match="on_error must be one of"):
        embed_folder(model, str(mixed), transform, on_error="ignore", progress=False)


def test_a_decompression_bomb_is_an_unreadable_image(mixed, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 20 x 18 PNGs are now over twice the limit
    assert "decompression bomb" in check_image(str(mixed / "a.png"))
    assert check_folder(str(mixed)).good == []


def test_input_and_output_mistakes_exit_2_before_the_model_loads(backbone, mixed, tmp_path, capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(embed, "load_for_inference", no_model)
    folder_output = tmp_path / "existing"
    folder_output.mkdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(locked) and real_access(path, mode))
    cases = {
        (str(mixed), str(folder_output)): "is a folder; give a file path",
        (str(mixed), str(blocker / "out.safetensors")): "is a file, not a folder",
        (str(mixed), str(locked / "deeper" / "out.safetensors")): "is not writable",
        (str(tmp_path / "missing"), str(tmp_path / "out.safetensors")): "does not exist",
    }
    for (images, output), expected in cases.items():
        assert embed.main(_argv(backbone, images, output)) == 2
        assert expected in _error_line(capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "existing", "locked", "photos"]


def test_the_command_line_exit_status_and_message(backbone, mixed, tmp_path):
    output = tmp_path / "photos.safetensors"
    done = run_module([sys.executable, "-m", "peft_puma.embed", *_argv(backbone, mixed, output)])
    assert done.returncode == 2, done.stderr[-3000:]
    line = _error_line(done.stderr)
    assert "bad.png" in line and "--on_error skip" in line
    assert not output.exists()


@pytest.mark.slow
def test_two_processes_skip_the_same_files_and_give_the_single_process_rows(backbone, mixed, tmp_path):
    from training.test_distributed import _launch

    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    assert embed.main([*_argv(backbone, mixed, one, "--on_error", "skip", "--batch_size", "2")]) == 0
    argv = _argv(backbone, mixed, two, "--on_error", "skip", "--batch_size", "2")
    done = run_module([*_launch(), "-m", "peft_puma.embed", *argv])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("skipped 2 of 5") == 1  # printed by the main process only
    single, double = load_embeddings(str(one)), load_embeddings(str(two))
    assert double["paths"] == single["paths"] == GOOD and double["skipped"] == single["skipped"]
    torch.testing.assert_close(double["embeddings"], single["embeddings"])
    stopped = tmp_path / "stopped.safetensors"
    done = run_module([*_launch(), "-m", "peft_puma.embed", *_argv(backbone, mixed, stopped)])
    assert done.returncode != 0  # a process exits with 2; the launcher stops the other one and reports 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all("bad.png" in line and "--on_error skip" in line for line in errors)
    assert not stopped.exists()


def test_output_never_replaces_a_file_that_is_not_an_embeddings_file(backbone, mixed, tmp_path, capsys):
    mine = tmp_path / "notes.safetensors"
    mine.write_text("my own notes")
    assert embed.main(_argv(backbone, mixed, mine, "--on_error", "skip")) == 2
    assert "is not an embeddings file of peft_puma" in _error_line(capsys.readouterr().err)
    assert mine.read_text() == "my own notes"
    ours = tmp_path / "ours.safetensors"
    assert embed.main(_argv(backbone, mixed, ours, "--on_error", "skip")) == 0
    assert embed.main(_argv(backbone, mixed, ours, "--on_error", "skip")) == 0  # our own file: replaced
    assert load_embeddings(str(ours))["embeddings"].shape[0] == 3  # the readable images of the folder
