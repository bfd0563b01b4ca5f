"""A user's folder as it comes (docs/collections.md, "Problems"): read in one pass, every problem said in one message,
one listing rule for every command, and the class split unchanged."""

from __future__ import annotations

import os

import pytest
from PIL import Image
from search.messy_tree import BAD_NAME, make_clean_tree, make_messy_tree
from training.fixtures import make_collection_tree

from peft_puma.config.parsing import load_keys
from peft_puma.data.config import DataConfig
from peft_puma.data.folder_tree import read_folder_tree
from peft_puma.data.images import list_images
from peft_puma.data.schema import column_values
from peft_puma.data.unified import load_source
from peft_puma.errors import DatasetLayoutError, InvalidInputError


def _load(path, **keys):
    return load_source(load_keys(None, {"dataset_path": str(path), **keys}, DataConfig).validate())


def _rows(loaded) -> int:
    return sum(split.num_rows for split in loaded.data.values())


def test_every_problem_of_a_messy_tree_is_said_in_one_message(tmp_path):
    messes = make_messy_tree(str(tmp_path / "collections"))
    with pytest.raises(InvalidInputError) as error:
        _load(tmp_path / "collections")
    message = str(error.value)
    assert "\n" not in message
    assert "caf\\\\xe9.png" in message and "not valid UTF-8" in message  # named, not a pyarrow traceback
    assert "loop.jpg" in message and "Too many levels of symbolic links" in message
    assert "9.jpg" in message and "truncated" in message
    assert "Use --on_error skip to use the 37 readable image(s) of 40" in message
    assert "1 file(s) under" in message and "notes.txt" in message
    assert "1 image(s) lie in subfolders of their class folder" in message and "ImageFolder" in message
    assert f"1 class folder(s) hold no image file ({messes['empty']!r}): left out" in message


def test_on_error_skip_reads_a_messy_tree_and_warns_once_with_every_problem(tmp_path, capsys):
    make_messy_tree(str(tmp_path / "collections"))
    loaded = _load(tmp_path / "collections", on_error="skip")
    assert _rows(loaded) == 37
    assert loaded.description["unreadable_skipped"] == 3 and loaded.description["nested_images"] == 1
    assert loaded.description["empty_folders_left_out"] == 1
    assert set(loaded.split.domains["signs"]["train"] + loaded.split.domains["signs"]["test"]) >= {"signs_link"}
    assert "signs_empty" not in str(loaded.split.domains)
    err = capsys.readouterr().err
    assert "skipped 3 of 40 image file(s)" in err and "subfolders of their class folder" in err
    assert "hold no image file" in err and "not images" in err


def test_an_image_in_a_subfolder_counts_in_its_class_folder(tmp_path):
    make_clean_tree(str(tmp_path / "c"))
    Image.new("RGB", (16, 16)).save(tmp_path / "c" / "birds" / "birds_1" / "extra.png")
    os.makedirs(tmp_path / "c" / "birds" / "birds_1" / "2019")
    Image.new("RGB", (16, 16)).save(tmp_path / "c" / "birds" / "birds_1" / "2019" / "deep.png")
    tree = read_folder_tree(str(tmp_path / "c"))
    assert tree.layout == "domain_folders" and tree.nested == [os.path.join("birds", "birds_1", "2019", "deep.png")]
    assert tree.parts(tree.nested[0]) == (None, "birds", "birds_1")


def test_every_command_lists_a_folder_the_same_way_following_links_once(tmp_path):
    make_messy_tree(str(tmp_path / "c"), bad_name=False)
    os.symlink(tmp_path / "c", tmp_path / "c" / "birds" / "birds_0" / "back_to_top")  # a loop: not followed
    tree = read_folder_tree(str(tmp_path / "c"))
    assert list_images(str(tmp_path / "c")) == sorted(tree.files + tree.outside)
    linked = [path for path in tree.files if path.startswith(os.path.join("signs", "signs_link"))]
    assert len(linked) == 4 and len(tree.files) == len(set(tree.files))
    assert not any("back_to_top" in path for path in tree.files)


def test_a_class_folder_linked_to_another_class_is_a_class_of_its_images(tmp_path):
    make_clean_tree(str(tmp_path / "c"))
    os.symlink(tmp_path / "c" / "signs" / "signs_0", tmp_path / "c" / "signs" / "signs_copy")
    loaded = _load(tmp_path / "c")
    classes = {key for splits in loaded.split.domains.values() for keys in splits.values() for key in keys}
    assert "signs_copy" in classes and _rows(loaded) == 36


def test_a_name_that_is_not_utf8_is_named_and_skippable(tmp_path):
    make_clean_tree(str(tmp_path / "c"))
    bad_folder = os.path.join(os.fsencode(tmp_path / "c"), b"birds", b"birds_" + BAD_NAME[:4])
    os.makedirs(bad_folder)
    for number in range(2):
        Image.new("RGB", (16, 16)).save(os.fsdecode(os.path.join(bad_folder, b"%d.png" % number)))
    with pytest.raises(InvalidInputError, match=r"birds_caf.*not valid UTF-8.*1 more unreadable"):
        _load(tmp_path / "c")
    assert _rows(_load(tmp_path / "c", on_error="skip")) == 32


def test_split_folders_that_share_classes_are_said(tmp_path, capsys):
    for split in ("train", "test"):
        make_clean_tree(str(tmp_path / "c" / split))
    loaded = _load(tmp_path / "c")
    assert set(loaded.data) == {"train", "test"}
    err = capsys.readouterr().err
    assert "8 of the 8 test class(es) of the split folders also lie in the train folder" in err
    assert "unseen classes" in err


def test_domains_without_queries_and_other_problems_are_one_message(tmp_path):
    make_clean_tree(str(tmp_path / "c"))
    (tmp_path / "c" / "birds" / "notes.txt").write_text("x")
    for index in range(4):  # every class of signs down to one image: nothing to query
        for number in range(1, 4):
            for suffix in (".jpg", ".png"):
                path = tmp_path / "c" / "signs" / f"signs_{index}" / f"{number}{suffix}"
                if path.exists():
                    path.unlink()
    with pytest.raises(DatasetLayoutError) as error:
        _load(tmp_path / "c")
    message = str(error.value)
    assert "The domain 'signs' of" in message and "has no test class with two images or more" in message
    assert "Also found, not fatal" in message and "notes.txt" in message and "\n" not in message


def test_the_class_split_is_the_same_as_before(tmp_path):
    """Pinned: the split rule must put the same classes in the same splits (a change would move a user's test classes
    into training)."""
    make_collection_tree(str(tmp_path / "c"))
    domains = _load(tmp_path / "c").split.domains
    assert domains == {
        "colours": {
            "train": ["colours_01", "colours_05", "colours_06", "colours_09"],
            "validation": ["colours_04"],
            "test": ["colours_00", "colours_02", "colours_03", "colours_07", "colours_08"],
        },
        "shop": {
            "train": ["shop_02", "shop_03", "shop_04"],
            "validation": ["shop_05"],
            "test": ["shop_00", "shop_01", "shop_06", "shop_07"],
        },
        "stripes": {
            "train": ["stripes_01", "stripes_02", "stripes_08", "stripes_09"],
            "validation": ["stripes_05"],
            "test": ["stripes_00", "stripes_03", "stripes_04", "stripes_06", "stripes_07"],
        },
    }
    labels = column_values(_load(tmp_path / "c").data["train"], "label")
    assert labels == sorted(labels) and labels[0] == 0


def _csv_beside_images(root) -> None:
    """``root/data.csv`` (image, label, domain) beside ``root/pictures/*.png``; the CSV's labels differ from any folder
    name, and its paths are relative to its own folder."""
    os.makedirs(root / "pictures")
    lines = ["image,label,domain"]
    for index in range(16):
        name = f"pictures/{index}.png"
        Image.new("RGB", (16, 16), (index * 15, 0, 0)).save(root / name)
        lines.append(f"{name},kind_{index % 4},{'left' if index < 8 else 'right'}")
    (root / "data.csv").write_text("\n".join(lines) + "\n")


def test_a_csv_beside_its_images_is_the_data_and_its_columns_win(tmp_path, monkeypatch):
    _csv_beside_images(tmp_path / "mine")
    monkeypatch.chdir(tmp_path)  # elsewhere than the CSV's folder: its relative paths resolve against the CSV's
    loaded = _load(tmp_path / "mine", domain_column="domain", split_fractions=[0.5, 0.0, 0.5])
    assert loaded.description["kind"] == "data_files" and set(loaded.split.domains) == {"left", "right"}
    assert {key for splits in loaded.split.domains.values() for keys in splits.values() for key in keys} == {
        f"kind_{index}" for index in range(4)
    }
    by_file = _load(tmp_path / "mine" / "data.csv", domain_column="domain", split_fractions=[0.5, 0.0, 0.5])
    assert _rows(by_file) == 16


def test_missing_paths_of_a_data_file_are_found_at_load_with_every_problem(tmp_path):
    _csv_beside_images(tmp_path / "mine")
    os.remove(tmp_path / "mine" / "pictures" / "3.png")
    os.remove(tmp_path / "mine" / "pictures" / "12.png")
    with pytest.raises(InvalidInputError) as error:
        _load(tmp_path / "mine", domain_column="domain", split_fractions=[0.5, 0.0, 0.5])
    message = str(error.value)
    assert "3.png': file not found (1 more unreadable file(s)" in message and "Use --on_error skip" in message
    assert "check_images" not in message
    loaded = _load(tmp_path / "mine", domain_column="domain", split_fractions=[0.5, 0.0, 0.5], on_error="skip")
    assert _rows(loaded) == 14


@pytest.mark.parametrize(("name", "what"), [("notes.txt", "a .txt file"), ("photo.png", "an image file")])
def test_a_file_that_is_not_a_data_format_is_named_as_such(tmp_path, name, what):
    path = tmp_path / name
    if name.endswith(".png"):
        Image.new("RGB", (8, 8)).save(path)
    else:
        path.write_text("hello")
    with pytest.raises(DatasetLayoutError, match=f"is {what}, not a data file datasets reads"):
        _load(path)
