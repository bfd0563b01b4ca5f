"""A user's collection as the unified dataset (docs/collections.md): folder trees of one or several domains, datasets
read through named columns, the seeded class split and its record, and every mistake a source can hold as a one-line
error."""

from __future__ import annotations

import json
import os
import struct
import zlib

import datasets
import numpy as np
import pytest
from PIL import Image
from training.fixtures import make_collection_tree, tree_as_dataset

from peft_puma.config.parsing import load_keys
from peft_puma.data.config import DataConfig
from peft_puma.data.schema import column_values
from peft_puma.data.splits import DEFAULT_SPLIT_FRACTIONS, SplitRecord, SplitRule
from peft_puma.data.unified import SCORING, load_source
from peft_puma.errors import DatasetLayoutError, InvalidConfigError, InvalidInputError

SMALL = {"birds": (6, 3), "cars": (5, 3)}


def _load(path, purpose="training", record=None, **keys):
    config = load_keys(None, {"dataset_path": str(path), **keys}, DataConfig).validate()
    return load_source(config, purpose=purpose, record=record)


def _columns(split) -> dict[str, list]:
    return {name: column_values(split, name) for name in ("label", "dataset", "role")}


def _image(folder, name, colour=(10, 20, 30)) -> None:
    os.makedirs(folder, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(os.path.join(folder, name))


def test_a_folder_of_class_folders_is_one_domain_named_after_the_folder(tmp_path):
    make_collection_tree(str(tmp_path / "mine"), {"x": (6, 3)})
    loaded = _load(tmp_path / "mine" / "x")
    assert set(loaded.data) == {"train", "validation", "test"}
    assert {name for split in loaded.data.values() for name in column_values(split, "dataset")} == {"x"}
    assert loaded.description == {
        "dataset_path": str(tmp_path / "mine" / "x"),
        "kind": "folder_tree",
        "layout": "class_folders",
        "split_folders": False,
        "images": 18,
        "not_images_ignored": 0,
        "unreadable_skipped": 0,
        "split": {"split_seed": 0, "split_fractions": list(DEFAULT_SPLIT_FRACTIONS)},
    }
    # pinned: a change of the rule would silently move a user's test classes into training
    assert loaded.split.domains["x"] == {
        "train": ["x_02", "x_03"],
        "validation": ["x_01"],
        "test": ["x_00", "x_04", "x_05"],
    }


def test_domain_folders_are_split_by_class_each_domain_on_its_own(tmp_path):
    make_collection_tree(str(tmp_path / "c"), SMALL)
    loaded = _load(tmp_path / "c")
    data = loaded.data
    train, test = _columns(data["train"]), _columns(data["test"])
    assert set(train["dataset"]) == set(test["dataset"]) == {"birds", "cars"}
    assert train["label"] == sorted(train["label"]) and set(train["role"]) == {"train"}
    assert sorted(set(train["label"])) == list(range(len(set(train["label"]))))  # 0 .. T-1: they index the proxies
    assert not set(train["label"]) & set(test["label"]) and set(test["role"]) == {"both"}
    for domain, splits in loaded.split.domains.items():
        members = [set(splits[name]) for name in ("train", "validation", "test")]
        assert len(set().union(*members)) == SMALL[domain][0] == sum(map(len, members))  # disjoint, complete
        assert all(members[0]) and members[2]
    image = data["test"][0]["image"]
    assert image.size == (16, 16) and data["test"].features["image"] == datasets.Image()


def test_the_split_is_seeded_and_a_domain_keeps_its_split_when_another_is_added(tmp_path):
    make_collection_tree(str(tmp_path / "two"), SMALL)
    make_collection_tree(str(tmp_path / "one"), {"birds": SMALL["birds"]})
    first, again = _load(tmp_path / "two").split, _load(tmp_path / "two").split
    assert first.domains == again.domains
    assert _load(tmp_path / "one").split.domains["birds"] == first.domains["birds"]
    other = _load(tmp_path / "two", split_seed=1).split
    assert other.domains != first.domains and other.rule == SplitRule(DEFAULT_SPLIT_FRACTIONS, 1)


@pytest.mark.parametrize(
    ("classes", "fractions", "counts"),
    [
        (2, DEFAULT_SPLIT_FRACTIONS, (1, 0, 1)),
        (3, DEFAULT_SPLIT_FRACTIONS, (1, 0, 2)),
        (10, DEFAULT_SPLIT_FRACTIONS, (4, 1, 5)),
        (200, DEFAULT_SPLIT_FRACTIONS, (80, 20, 100)),
        (5, (0.8, 0.0, 0.2), (4, 0, 1)),
        (4, (0.0, 0.0, 1.0), (0, 0, 4)),
    ],
)
def test_every_domain_keeps_a_training_and_a_test_class(classes, fractions, counts):
    assert tuple(SplitRule(fractions).counts(classes).values()) == counts


@pytest.mark.parametrize("fractions", [[0.5, 0.5], [0.6, 0.6, -0.2], [0.5, 0.5, 0.0], [0.3, 0.3, 0.3]])
def test_split_fractions_must_be_three_that_sum_to_one_with_a_test_share(tmp_path, fractions):
    with pytest.raises(InvalidConfigError, match="split_fractions must"):
        _load(tmp_path, split_fractions=fractions)


def test_split_folders_are_used_as_they_are(tmp_path):
    for split, classes in (("train", ("a", "b")), ("test", ("b", "c"))):
        for name in classes:
            for index in range(2):
                _image(tmp_path / "photos" / split / name, f"{index}.png")
    loaded = _load(tmp_path / "photos")
    assert loaded.split is None and loaded.description["split"] == "the source's own splits"
    assert set(loaded.data) == {"train", "test"}
    assert column_values(loaded.data["train"], "label") == [0, 0, 1, 1]
    assert column_values(loaded.data["test"], "label") == [1, 1, 2, 2]  # class b keeps its label


def _lonely_tree(root, lonely: int) -> None:
    """birds: 10 classes of 3 images, the first ``lonely`` of them left with one; cars: 5 classes of 3."""
    make_collection_tree(str(root), {"birds": (10, 3), "cars": (5, 3)})
    for index in range(lonely):
        for name in ("1.jpg", "2.png"):
            os.remove(root / "birds" / f"birds_{index:02d}" / name)


def test_classes_with_a_single_image_train_first_and_held_out_are_never_queries(tmp_path, capsys):
    _lonely_tree(tmp_path / "c", lonely=6)
    loaded = _load(tmp_path / "c")
    birds = loaded.split.domains["birds"]
    assert len(birds["train"]) == 4 and all(int(key[-2:]) < 6 for key in birds["train"])  # four of the six train
    assert sum(int(key[-2:]) < 6 for key in birds["test"]) == 2 and birds["validation"]  # two are held out
    test = _columns(loaded.data["test"])
    sizes = {label: test["label"].count(label) for label in test["label"]}
    assert {role for label, role in zip(test["label"], test["role"]) if sizes[label] == 1} == {"gallery"}
    assert {role for label, role in zip(test["label"], test["role"]) if sizes[label] > 1} == {"both"}
    err = capsys.readouterr().err
    assert "2 held-out class(es) of" in err and "have a single image (birds/birds_0" in err and "never queries" in err


def test_a_domain_whose_held_out_classes_all_have_one_image_is_refused(tmp_path):
    _lonely_tree(tmp_path / "c", lonely=10)
    with pytest.raises(
        DatasetLayoutError, match="The domain 'birds' of .* has no test class with two images or more, so none"
    ):
        _load(tmp_path / "c")


def test_files_that_are_not_images_and_hidden_files_are_ignored_and_counted(tmp_path, capsys):
    make_collection_tree(str(tmp_path / "c"), SMALL)
    (tmp_path / "c" / "birds" / "notes.txt").write_text("x")
    (tmp_path / "c" / "cars" / "cars_00" / "Thumbs.db").write_text("x")
    (tmp_path / "c" / ".cache").mkdir()
    (tmp_path / "c" / ".cache" / "thumb.png").write_bytes(b"")
    data = _load(tmp_path / "c").data
    assert sum(split.num_rows for split in data.values()) == 6 * 3 + 5 * 3
    assert "2 file(s) under" in capsys.readouterr().err
    assert _load(tmp_path / "c").description["not_images_ignored"] == 2


def _bomb_png(path) -> None:
    """A PNG header announcing 100,000 x 100,000 pixels (far over Pillow's limit); no pixel data follows."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "holds no image file"),
        (lambda root: _image(root, "a.png"), "lie directly in the folder"),
        (
            lambda root: (_image(root / "a", "1.png"), _image(root / "b" / "c", "2.png")),
            "1 image(s) lie in subfolders of their class folder",
        ),
        (lambda root: _image(root / "a" / "b" / "c", "1.png"), "lie 3 folders deep"),
        (lambda root: (_image(root / "a", "1.png"), (root / "b").mkdir()), "class folder"),
        (lambda root: (_image(root / "a", "1.png"), _image(root / "a", "2.png")), "holds a single class ('a'"),
        (
            lambda root: (
                _image(root / "d1" / "a", "1.png"),
                _image(root / "d1" / "b", "1.png"),
                _image(root / "d2" / "c", "1.png"),
            ),
            "The domain 'd2' of",
        ),
    ],
    ids=["empty", "flat", "mixed", "too-deep", "empty-class", "one-class", "one-class-domain"],
)
def test_a_folder_without_an_accepted_layout_is_one_line_naming_what_is_accepted(tmp_path, make, message):
    root = tmp_path / "photos"
    make(root)
    with pytest.raises(DatasetLayoutError) as error:
        _load(root)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unreadable_images_stop_the_load_or_are_skipped_and_listed(tmp_path, capsys):
    make_collection_tree(str(tmp_path / "c"), SMALL)
    bad = tmp_path / "c" / "birds" / "birds_00" / "9.png"
    bad.write_text("not an image")
    os.symlink(tmp_path / "gone.png", tmp_path / "c" / "cars" / "cars_00" / "9.png")
    with pytest.raises(InvalidInputError) as error:
        _load(tmp_path / "c")
    message = str(error.value)
    assert f"Cannot read the image {str(bad)!r}: not a recognised image format" in message
    assert (
        "(1 more unreadable file(s)" in message
        and "Use --on_error skip to use the 33 readable image(s) of 35" in message
    )
    loaded = _load(tmp_path / "c", on_error="skip")
    assert sum(split.num_rows for split in loaded.data.values()) == 33
    assert loaded.description["unreadable_skipped"] == 2 and loaded.description["layout"] == "domain_folders"
    err = capsys.readouterr().err
    assert "skipped 2 of 35 image file(s)" in err and "cars_00/9.png: file not found" in err


def test_a_decompression_bomb_is_refused_by_the_header_check(tmp_path):
    make_collection_tree(str(tmp_path / "c"), SMALL)
    _bomb_png(tmp_path / "c" / "birds" / "birds_00" / "huge.png")
    with pytest.raises(InvalidInputError, match="huge.png': too large to decode safely, a possible decompression bomb"):
        _load(tmp_path / "c")


def test_a_truncated_image_is_found_before_training_by_the_full_check(tmp_path):
    make_collection_tree(str(tmp_path / "c"), SMALL)
    jpeg = tmp_path / "c" / "cars" / "cars_01" / "1.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    assert _load(tmp_path / "c", check_images="header").data  # the header is whole
    with pytest.raises(InvalidInputError, match="1.jpg': cannot be decoded .* truncated or corrupt"):
        _load(tmp_path / "c", check_images="full")
    with pytest.raises(InvalidInputError, match="1.jpg': cannot be decoded .* truncated or corrupt"):
        _load(tmp_path / "c")  # full is the default


def _table(path, labels, **columns) -> str:
    images = [Image.new("RGB", (8, 8), (index * 20, 0, 0)) for index in range(len(labels))]
    data = datasets.Dataset.from_dict({"picture": images, "label": labels, **columns})
    data.save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize(
    "labels",
    [["a", "a", "b", "b", "c", "c", "d", "d"], [3, 3, 7, 7, 9, 9, 11, 11]],
    ids=["strings", "integers"],
)
def test_a_dataset_is_read_through_the_columns_a_user_names(tmp_path, labels):
    path = _table(tmp_path / "d", labels, source=["x"] * 4 + ["y"] * 4)
    loaded = _load(path, image_column="picture", domain_column="source")
    assert loaded.description["kind"] == "saved_dataset" and loaded.description["domain_column"] == "source"
    assert loaded.split.domains["x"] == {"train": [labels[2]], "validation": [], "test": [labels[0]]}
    assert loaded.split.domains["y"] == {"train": [labels[6]], "validation": [], "test": [labels[4]]}
    assert column_values(loaded.data["test"], "dataset") == ["x", "x", "y", "y"]


def test_a_class_label_column_is_read_as_its_names(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog", "owl"])})
    images = [Image.new("RGB", (8, 8), (index * 40, 0, 0)) for index in range(6)]
    datasets.Dataset.from_dict({"image": images, "label": [0, 0, 1, 1, 2, 2]}, features=features).save_to_disk(
        str(tmp_path / "d")
    )
    split = _load(tmp_path / "d").split
    assert sorted(sum(split.domains["d"].values(), [])) == ["cat", "dog", "owl"]


def test_a_column_that_does_not_exist_is_named_with_the_columns_there_are(tmp_path):
    path = _table(tmp_path / "d", ["a", "a", "b", "b"])
    with pytest.raises(InvalidConfigError) as error:
        _load(path)
    assert str(error.value) == (
        "image_column 'image' is not a column of 'd'; its columns are picture, label. Set --image_column to one of "
        "them."
    )
    with pytest.raises(InvalidConfigError, match="domain_column 'site' is not a column of 'd'; its columns are"):
        _load(path, image_column="picture", domain_column="site")


def test_labels_that_are_neither_strings_nor_integers_are_refused(tmp_path):
    path = _table(tmp_path / "d", [0.5, 0.5, 1.5, 1.5])
    with pytest.raises(
        InvalidConfigError, match="label_column 'label' of 'd' holds Value\\('float64'.* must be strings, integers"
    ):
        _load(path, image_column="picture")


def test_a_hub_id_while_offline_is_one_line_at_once(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetLayoutError) as error:
        _load("someone/no_such_dataset_here")
    assert "is not a local file or folder, and the Hub is offline (HF_HUB_OFFLINE=1)" in str(error.value)
    with pytest.raises(DatasetLayoutError, match="'./missing/folder' does not exist"):
        _load("./missing/folder")


def test_the_same_images_as_a_folder_tree_and_as_a_dataset_give_the_same_rows(tmp_path):
    tree = make_collection_tree(str(tmp_path / "c"), SMALL)
    table = tree_as_dataset(tree, str(tmp_path / "d"))
    from_tree, from_table = _load(tree), _load(table, domain_column="domain")
    assert from_tree.split.domains == from_table.split.domains
    for split in from_tree.data:
        assert _columns(from_tree.data[split]) == _columns(from_table.data[split])
        pixels = [np.asarray(row["image"]) for row in from_tree.data[split]]
        assert all((a == np.asarray(b["image"])).all() for a, b in zip(pixels, from_table.data[split]))


def test_a_run_s_split_record_is_reused_and_classes_it_does_not_know_are_test_classes(tmp_path):
    make_collection_tree(str(tmp_path / "c"), SMALL)
    record = _load(tmp_path / "c").split
    path = tmp_path / "data_split.json"
    record.write(str(path))
    again = SplitRecord.read(str(path))
    assert again.domains == record.domains and again.rule == record.rule
    assert json.loads(path.read_text())["rule"] == {"split_seed": 0, "split_fractions": [0.4, 0.1, 0.5]}
    scored = _load(tmp_path / "c", SCORING, again, split_seed=7)  # the record wins over the keys
    assert _columns(scored.data["test"]) == _columns(_load(tmp_path / "c").data["test"])
    make_collection_tree(str(tmp_path / "new"), {"boats": (3, 3)})
    fresh = _load(tmp_path / "new", SCORING, again)
    assert set(fresh.data) == {"test"} and fresh.data["test"].num_rows == 9


def test_data_of_test_classes_alone_is_scored_without_a_train_split(tmp_path):
    rows = {"image": [Image.new("RGB", (8, 8))] * 4, "label": [0, 0, 1, 1], "dataset": ["x"] * 4, "role": ["both"] * 4}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "t"))
    assert _load(tmp_path / "t", SCORING).data["test"].num_rows == 4
    with pytest.raises(
        DatasetLayoutError, match="must be a DatasetDict with 'train' and 'test' splits; got \\['test'\\]"
    ):
        _load(tmp_path / "t")


def test_nothing_is_written_into_the_source(tmp_path):
    tree = make_collection_tree(str(tmp_path / "c"), SMALL)
    table = tree_as_dataset(tree, str(tmp_path / "d"))

    def listing(root):
        return sorted(
            (path, os.path.getmtime(os.path.join(path, name))) for path, _, names in os.walk(root) for name in names
        )

    before = listing(tmp_path)
    for path, keys in ((tree, {}), (table, {"domain_column": "domain", "datasets": ["birds"]})):
        next(iter(_load(path, **keys).data["train"]))
    assert listing(tmp_path) == before


def test_the_datasets_key_leaves_domains_out_before_they_are_checked_or_split(tmp_path):
    make_collection_tree(str(tmp_path / "c"), {**SMALL, "tiny": (1, 3)})  # a one-class domain, left out
    loaded = _load(tmp_path / "c", datasets=["cars"])
    assert set(loaded.split.domains) == {"cars"}
    assert loaded.split.domains["cars"] == _load(tmp_path / "c", datasets=["birds", "cars"]).split.domains["cars"]
    assert {name for split in loaded.data.values() for name in column_values(split, "dataset")} == {"cars"}
    assert column_values(loaded.data["train"], "label") == sorted(column_values(loaded.data["train"], "label"))
    with pytest.raises(InvalidConfigError, match=r"Unknown dataset\(s\) \['boats'\] in `datasets`; this source has"):
        _load(tmp_path / "c", datasets=["boats"])


def test_the_collections_config_is_a_valid_training_config():
    from peft_puma.training import load_config

    config = load_config(
        os.path.join(os.path.dirname(__file__), "..", "..", "configs", "collections.yaml"), ["--output_dir", "x"]
    )
    assert config.dataset_path == "my_collections" and config.split_fractions == list(DEFAULT_SPLIT_FRACTIONS)


def test_data_files_datasets_reads_are_a_source_too(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))  # not the user's cache
    images = [Image.new("RGB", (8, 8), (index * 30, 0, 0)) for index in range(8)]
    table = datasets.Dataset.from_dict({"photo": images, "kind": ["a", "a", "b", "b", "c", "c", "d", "d"]})
    (tmp_path / "pq").mkdir()
    table.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    for path, name in ((tmp_path / "pq", "pq"), (tmp_path / "pq" / "train.parquet", "train")):
        loaded = _load(path, image_column="photo", label_column="kind")
        assert loaded.description["kind"] == "data_files"
        assert sorted(sum(loaded.split.domains[name].values(), [])) == ["a", "b", "c", "d"]
        assert loaded.data["test"][0]["image"].size == (8, 8)
