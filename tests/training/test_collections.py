"""Your own images (README, "Your own images"; docs/collections.md): a folder tree of several domains trains an
adapter with a per-domain table, ``evaluate`` scores the classes the run held out again, ``search`` indexes and
queries the same collections; in one process and in two under ``accelerate launch``. Every mistake a user's folder or
dataset can hold is one ``error:`` line with exit status 2, and nothing is written into the folder."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib

import datasets
import numpy as np
import pytest
from PIL import Image

from peft_puma import embed, evaluate, train
from peft_puma.inference.embeddings_file import load_embeddings
from peft_puma.search.cli import main as search

from .conftest import run_module
from .fixtures import make_collection_tree, tiny_config, write_config
from .test_distributed import _launch

TABLE = "| colours | shop | stripes | Unified | Harmonic |"


def _argv(values: dict) -> list[str]:
    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def _one_line_error(err: str) -> str:
    lines = err.strip().replace("\r", "\n").splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> str:
    """Three domains of 8-10 classes, PNG and JPEG files (120 images)."""
    return make_collection_tree(str(tmp_path_factory.mktemp("mine") / "collections"))


def _listing(root: str) -> list[tuple[str, float]]:
    return sorted(
        (os.path.join(path, name), os.lstat(os.path.join(path, name)).st_mtime)
        for path, _, names in os.walk(root)
        for name in names
    )


def test_a_folder_tree_trains_evaluates_and_searches_in_three_commands(tiny_assets, collection, tmp_path, capsys):
    before = _listing(collection)
    run = str(tmp_path / "run")
    assert train.main(_argv(tiny_config(tiny_assets["backbone"], collection, output_dir=run))) == 0
    assert TABLE in capsys.readouterr().out
    assert {"data_split.json", "retrieval_examples.png", "results.json"} <= set(os.listdir(run))
    with open(os.path.join(run, "results.json")) as handle:
        trained = json.load(handle)
    assert trained["data_source"]["layout"] == "domain_folders" and trained["data_source"]["images"] == 120

    scored = str(tmp_path / "scored.json")
    argv = ["--adapter", run, "--dataset_path", collection, "--ks", "1", "2", "4", "--output", scored]
    assert evaluate.main(argv) == 0
    with open(scored) as handle:
        again = json.load(handle)
    assert again["unified"] == trained["unified"] and again["per_dataset"] == trained["per_dataset"]
    assert again["data_source"]["split"].startswith("a run's split record (0 class(es)")

    index, found = str(tmp_path / "index"), str(tmp_path / "found.json")
    query = os.path.join(collection, "shop", "shop_03", "2.png")
    assert search(["index", "--adapter", run, "--images", collection, "--output", index]) == 0
    assert search(["query", "--index", index, "--images", query, "--k", "3", "--output", found]) == 0
    with open(found) as handle:
        results = json.load(handle)["queries"][0]["results"]
    assert len(results) == 3 and results[0]["path"] == os.path.abspath(query)

    # the run's held-out classes, as evaluate scored them: embed and search read the collection with the run's split
    test_rows = trained["unified"]["num_gallery"]
    vectors = str(tmp_path / "test.safetensors")
    assert embed.main(["--adapter", run, "--dataset", collection, "--split", "test", "--output", vectors]) == 0
    assert load_embeddings(vectors)["embeddings"].shape[0] == test_rows
    index = str(tmp_path / "test_index")
    assert search(["index", "--adapter", run, "--dataset", collection, "--split", "test", "--output", index]) == 0
    argv = ["query", "--index", index, "--query_dataset", collection, "--query_rows", "0", "5", "--k", "2"]
    assert search([*argv, "--output", found, "--grid", str(tmp_path / "grid.png")]) == 0
    with open(found) as handle:
        answered = json.load(handle)
    assert answered["leave_one_out"] and all("match" in hit for q in answered["queries"] for hit in q["results"])
    assert _listing(collection) == before  # nothing written into the user's folder


def test_evaluate_scores_a_new_collection_of_test_classes_alone(tiny_assets, collection, tmp_path, capsys):
    run = str(tmp_path / "run")
    values = tiny_config(tiny_assets["backbone"], collection, output_dir=run, max_steps=2)
    assert train.main(_argv(values)) == 0
    new = make_collection_tree(str(tmp_path / "boats"), {"boats": (4, 3)}, seed=5)
    assert evaluate.main(["--adapter", run, "--dataset_path", os.path.join(new, "boats")]) == 0
    out = capsys.readouterr().out
    assert "| boats | Unified | Harmonic |" in out and "(12 queries, gallery of 12)" in out


def _launched(tmp_path, *argv: str):
    done = run_module([*_launch(), "-m", *argv], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_the_walkthrough_under_accelerate_launch_with_two_processes(tiny_assets, collection, tmp_path):
    single = str(tmp_path / "single")
    values = tiny_config(tiny_assets["backbone"], collection, output_dir=single)
    assert train.main(_argv(values)) == 0
    config = write_config(str(tmp_path / "config.yaml"), {**values, "per_device_batch_size": 4})
    two = str(tmp_path / "two")
    done = _launched(tmp_path, "peft_puma.train", "--config", config, "--output_dir", two)
    assert "4 per process x 2 process(es) = 8" in done.stdout and TABLE in done.stdout
    with open(os.path.join(single, "data_split.json")) as one, open(os.path.join(two, "data_split.json")) as other:
        assert json.load(one) == json.load(other)  # the same split, whatever the number of processes
    scored = str(tmp_path / "scored.json")
    _launched(tmp_path, "peft_puma.evaluate", "--adapter", two, "--dataset_path", collection, "--ks", "1", "2", "4",
              "--output", scored)  # fmt: skip
    with open(scored) as handle, open(os.path.join(two, "results.json")) as trained:
        assert json.load(handle)["unified"] == json.load(trained)["unified"]
    index = str(tmp_path / "index")
    done = _launched(tmp_path, "peft_puma.search", "index", "--adapter", two, "--images", collection, "--output", index)
    assert "120 images indexed" in done.stdout


def _bomb(path: str) -> None:
    """A PNG header announcing 100,000 x 100,000 pixels (over Pillow's limit); no pixel data follows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def _truncated(path: str) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def _table(path: str, labels: list, image_column: str = "picture") -> str:
    images = [Image.new("RGB", (16, 16), (index * 20, 0, 0)) for index in range(len(labels))]
    datasets.Dataset.from_dict({image_column: images, "label": labels}).save_to_disk(path)
    return path


def _tree(root: str, layout: dict) -> str:
    return make_collection_tree(root, layout)


# name -> (make the source in a scratch folder and return its path, extra keys, part of the error line)
MISTAKES = {
    "empty folder": (lambda root: (os.makedirs(root), root)[1], {}, "holds no image file (.jpg, .jpeg, .png"),
    "images straight in the folder": (
        lambda root: (os.makedirs(root), Image.new("RGB", (8, 8)).save(os.path.join(root, "a.png")), root)[2],
        {},
        "lie directly in the folder. Accepted: <folder>/<class>/<image> (one domain) or",
    ),
    "a single class": (
        lambda root: os.path.join(_tree(root, {"d": (1, 3)}), "d"),
        {},
        "holds a single class ('d_00' of domain 'd'); retrieval needs at least 2 classes",
    ),
    "a domain with one class": (
        lambda root: _tree(root, {"big": (4, 2), "small": (1, 3)}),
        {},
        "The domain 'small' of '{root}' has a single class ('small_00'); every domain needs at least 2 classes",
    ),
    "a corrupt image": (
        lambda root: (_tree(root, {"d": (3, 2)}), open(os.path.join(root, "d", "d_00", "x.jpg"), "w").close(), root)[2],
        {},
        "Cannot read the image '{root}/d/d_00/x.jpg': file is empty (0 bytes). Use --on_error skip to use the 6",
    ),
    "a truncated image (full check)": (
        lambda root: (_tree(root, {"d": (3, 2)}), _truncated(os.path.join(root, "d", "d_01", "t.jpg")), root)[2],
        {"check_images": "full"},
        "Cannot read the image '{root}/d/d_01/t.jpg': cannot be decoded (OSError",
    ),
    "a truncated image (the default check, full, finds it before training)": (
        lambda root: (_tree(root, {"d": (3, 2)}), _truncated(os.path.join(root, "d", "d_01", "t.jpg")), root)[2],
        {},
        "Cannot read the image '{root}/d/d_01/t.jpg': cannot be decoded (OSError",
    ),
    "an unreadable file": (
        lambda root: (
            _tree(root, {"d": (3, 2)}),
            os.symlink("/nonexistent.png", os.path.join(root, "d", "d_00", "l.png")),
            root,
        )[2],
        {},
        "Cannot read the image '{root}/d/d_00/l.png': file not found",
    ),
    "a decompression bomb": (
        lambda root: (_tree(root, {"d": (3, 2)}), _bomb(os.path.join(root, "d", "d_02", "huge.png")), root)[2],
        {},
        "huge.png': too large to decode safely, a possible decompression bomb (Image size (10000000000 pixels)",
    ),
    "a column that does not exist": (
        lambda root: _table(root, ["a", "a", "b", "b"]),
        {},
        "image_column 'image' is not a column of 'source'; its columns are picture, label. Set --image_column",
    ),
    "labels that are neither strings nor integers": (
        lambda root: _table(root, [0.5, 0.5, 1.5, 1.5], image_column="image"),
        {},
        "label_column 'label' of 'source' holds Value('float64'); labels and domains must be strings, integers",
    ),
    "a Hub id while offline": (
        lambda root: "nobody/no_such_dataset",
        {},
        "'nobody/no_such_dataset' is not a local file or folder, and the Hub is offline (HF_HUB_OFFLINE=1) with no",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_every_mistake_in_a_source_is_one_line_with_exit_status_2(tiny_assets, tmp_path, capsys, mistake):
    make, keys, expected = MISTAKES[mistake]
    root = str(tmp_path / "source")
    source = make(root)
    before = _listing(root) if os.path.isdir(root) else []
    values = tiny_config(tiny_assets["backbone"], source, output_dir=str(tmp_path / "run"), **keys)
    assert train.main(_argv(values)) == 2
    assert expected.format(root=root) in _one_line_error(capsys.readouterr().err)
    assert (_listing(root) if os.path.isdir(root) else []) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its permissions")
def test_a_file_without_read_permission_is_one_line_with_exit_status_2(tiny_assets, tmp_path, capsys):
    root = _tree(str(tmp_path / "source"), {"d": (3, 2)})
    locked = os.path.join(root, "d", "d_00", "0.png")
    os.chmod(locked, 0)
    values = tiny_config(tiny_assets["backbone"], root, output_dir=str(tmp_path / "run"))
    assert train.main(_argv(values)) == 2
    assert f"Cannot read the image {locked!r}: cannot be read (Permission denied)" in _one_line_error(
        capsys.readouterr().err
    )


def _messy(root: str) -> str:
    """A valid collection with what users' folders hold: classes of one image, files that are not images, every image
    mode, an unreadable image (skipped on request)."""
    _tree(root, {"birds": (10, 3), "cars": (6, 3)})
    for index in range(6):  # six one-image classes: four train, two are held out as test classes
        for number in (1, 2):
            os.remove(os.path.join(root, "birds", f"birds_{index:02d}", f"{number}.{'jpg' if number == 1 else 'png'}"))
    cars = os.path.join(root, "cars")
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(os.path.join(cars, "cars_00", "grey16.png"))
    Image.new("RGBA", (16, 16), (200, 0, 0, 100)).save(os.path.join(cars, "cars_01", "alpha.png"))
    Image.new("P", (16, 16), 3).save(os.path.join(cars, "cars_02", "palette.gif"))
    Image.new("L", (16, 16), 90).save(os.path.join(cars, "cars_03", "grey.jpg"))
    Image.new("CMYK", (16, 16), (0, 50, 0, 0)).save(os.path.join(cars, "cars_04", "cmyk.jpg"))
    with open(os.path.join(root, "birds", "notes.txt"), "w") as handle:
        handle.write("my notes")
    with open(os.path.join(cars, "cars_05", "broken.png"), "w") as handle:
        handle.write("not an image")
    return root


def test_a_messy_folder_trains_saying_what_it_ignored_skipped_and_kept_out_of_the_queries(
    tiny_assets, tmp_path, capsys
):
    root = _messy(str(tmp_path / "source"))
    values = tiny_config(tiny_assets["backbone"], root, output_dir=str(tmp_path / "run"), on_error="skip")
    values.update(max_steps=2, per_device_batch_size=4)
    assert train.main(_argv(values)) == 0
    err = capsys.readouterr().err
    assert "warning: 1 file(s) under" in err and "are not images" in err and "'birds/notes.txt'" in err
    assert "warning: skipped 1 of 42 image file(s)" in err and "broken.png: not a recognised image format" in err
    assert "warning: 2 held-out class(es) of" in err and "have a single image (birds/birds_0" in err
    with open(tmp_path / "run" / "results.json") as handle:
        birds = json.load(handle)["per_dataset"]["birds"]
    assert birds["num_gallery"] == birds["num_queries"] + 2  # the two one-image classes are never queries


@pytest.mark.parametrize("labels", [["x", "x", "y", "y", "z", "z"] * 3, [4, 4, 8, 8, 9, 9] * 3], ids=["str", "int"])
def test_labels_that_are_strings_or_integers_train(tiny_assets, tmp_path, labels):
    source = _table(str(tmp_path / "source"), labels, image_column="image")
    values = tiny_config(tiny_assets["backbone"], source, output_dir=str(tmp_path / "run"), max_steps=1)
    assert train.main(_argv({**values, "per_device_batch_size": 2, "split_fractions": [0.4, 0.0, 0.6]})) == 0
    with open(tmp_path / "run" / "data_split.json") as handle:
        split = json.load(handle)["domains"]["source"]
    assert sorted(split["train"] + split["test"]) == sorted(set(labels))


def test_a_truncated_image_met_while_training_stops_with_one_line_naming_it(tiny_assets, tmp_path, capsys):
    """The header check cannot see a truncated JPEG; the DataLoader worker that decodes it names it."""
    root = _tree(str(tmp_path / "source"), {"d": (6, 3)})
    for name in os.listdir(root + "/d"):
        _truncated(os.path.join(root, "d", name, "1.jpg"))
    values = tiny_config(
        tiny_assets["backbone"], root, output_dir=str(tmp_path / "run"), num_workers=1, check_images="header"
    )
    assert train.main(_argv({**values, "per_device_batch_size": 2})) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"error: Cannot read the image '{os.path.abspath(root)}/d/d_0" in line
    assert "/1.jpg': image file is truncated" in line and "check_images: full" in line
    shutil.rmtree(tmp_path / "run")
