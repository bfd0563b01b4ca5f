"""Each paper dataset is read from a fake copy of its ORIGINAL layout and split as docs/spec.md section 7 says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import fake_layouts as fl
import pytest

from peft_puma.data import DATASET_SPECS
from peft_puma.data.specs.base import ParseOptions

EXISTS_ONLY = ParseOptions(check_images="exists")  # the big fakes: decoding 45k images adds nothing to split checks

# (train classes, test classes) of docs/spec.md section 7.
TABLE = {
    "cub": (100, 100),
    "cars": (98, 98),
    "sop": (11318, 11316),
    "inshop": (3997, 3985),
    "nabirds": (278, 277),
    "dogs": (60, 60),
    "flowers": (51, 51),
    "aircraft": (50, 50),
}


@pytest.fixture(scope="module")
def fakes(paper_roots: dict[str, Path]) -> dict[str, Path]:
    return paper_roots


@pytest.fixture(scope="module")
def parsed(fakes: dict[str, Path]) -> dict:
    return {name: DATASET_SPECS[name].parse(root, EXISTS_ONLY) for name, root in fakes.items()}


def test_registry_has_the_eight_datasets_in_table_order() -> None:
    assert list(DATASET_SPECS) == list(TABLE)
    for name, spec in DATASET_SPECS.items():
        assert spec.name == name


@pytest.mark.parametrize("name", list(TABLE))
def test_split_class_counts_match_the_table(parsed: dict, name: str) -> None:
    train_classes, test_classes = TABLE[name]
    assert (parsed[name].train.num_classes, parsed[name].test.num_classes) == (train_classes, test_classes)
    assert set(parsed[name].train.labels) == set(range(train_classes))
    assert set(parsed[name].test.labels) == set(range(test_classes))


@pytest.mark.parametrize("name", list(TABLE))
def test_every_listed_image_lands_on_exactly_one_side(fakes: dict[str, Path], parsed: dict, name: str) -> None:
    spec = DATASET_SPECS[name]
    entries = spec.read_entries(spec.locate(fakes[name]))
    train, test = parsed[name].train.images, parsed[name].test.images
    assert sorted(train + test) == sorted(e.path for e in entries)
    assert not set(train) & set(test)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in train[:5] + test[:5])


@pytest.mark.parametrize("name", ["cub", "cars", "sop", "nabirds", "dogs", "flowers", "aircraft"])
def test_leave_one_out_test_rows_have_role_both(parsed: dict, name: str) -> None:
    assert set(parsed[name].train.roles) == {"train"}
    assert set(parsed[name].test.roles) == {"both"}


def test_cub_classes_1_to_100_train_101_to_200_test(parsed: dict) -> None:
    assert parsed["cub"].train.class_names[0] == "001.Bird_1"
    assert parsed["cub"].train.class_names[-1] == "100.Bird_100"
    assert parsed["cub"].test.class_names[0] == "101.Bird_101"
    assert all("/001.Bird_1/" in p for p, y in zip(parsed["cub"].train.images, parsed["cub"].train.labels) if y == 0)


def test_cars_classes_1_to_98_train_across_both_classification_splits(parsed: dict) -> None:
    train = parsed["cars"].train
    assert train.class_names[0] == "Make1 Model 2000" and train.class_names[-1].startswith("Make98 ")
    assert parsed["cars"].test.class_names[0].startswith("Make99 ")
    folders = Counter(Path(p).parent.name for p in train.images)
    assert folders == {"cars_train": 98, "cars_test": 98}


@pytest.mark.parametrize("test_in_devkit", [False, True])
def test_cars_devkit_test_labels_found_at_top_or_in_devkit(tmp_path: Path, test_in_devkit: bool) -> None:
    root = fl.make_cars_devkit(tmp_path, test_in_devkit=test_in_devkit)
    parsed = DATASET_SPECS["cars"].parse(root, EXISTS_ONLY)
    assert (parsed.train.num_classes, len(parsed.train), len(parsed.test)) == (98, 196, 196)


def test_cars_combined_car_ims_layout_gives_the_same_split(tmp_path: Path, parsed: dict) -> None:
    combined = DATASET_SPECS["cars"].parse(fl.make_cars_combined(tmp_path), EXISTS_ONLY)
    assert combined.train.class_names == parsed["cars"].train.class_names
    assert (len(combined.train), len(combined.test)) == (196, 196)
    assert all("/car_ims/" in p for p in combined.train.images)


def test_sop_uses_the_official_lists(parsed: dict) -> None:
    sop = parsed["sop"]
    assert sop.train.class_names[0] == "1" and sop.train.class_names[-1] == "11318"
    assert sop.test.class_names[0] == "11319" and sop.test.class_names[-1] == "22634"
    assert len(sop.train) == 2 * 11318 and len(sop.test) == 2 * 11316


def test_inshop_keeps_query_and_gallery_roles_with_shared_item_labels(parsed: dict) -> None:
    test = parsed["inshop"].test
    assert Counter(test.roles) == {"query": 3985, "gallery": 3985}
    labels_by_role = {role: {y for y, r in zip(test.labels, test.roles) if r == role} for role in ("query", "gallery")}
    assert labels_by_role["query"] == labels_by_role["gallery"] == set(range(3985))
    assert set(parsed["inshop"].train.roles) == {"train"}


def test_inshop_reads_the_eval_and_img_subfolder_layout(fast_tmp_path: Path) -> None:
    root = fl.make_inshop(fast_tmp_path / "inshop", train_items=3997, test_items=3985, nested=True)
    parsed = DATASET_SPECS["inshop"].parse(root, EXISTS_ONLY)
    assert (parsed.train.num_classes, parsed.test.num_classes) == (3997, 3985)
    assert all("/Img/img/" in p for p in parsed.test.images[:10])


def test_nabirds_leaves_are_the_classes_with_images_sorted_by_id(parsed: dict) -> None:
    nabirds = parsed["nabirds"]
    assert nabirds.train.class_names[0] == "Leaf bird 100 (Adult)"  # inner nodes 0-9 have no images
    assert nabirds.train.class_names[-1] == f"Leaf bird {100 + 2 * 277} (Adult)"
    assert nabirds.test.class_names[0] == f"Leaf bird {100 + 2 * 278} (Adult)"


def test_dogs_first_60_sorted_breed_folders_train(parsed: dict) -> None:
    assert parsed["dogs"].train.class_names[:2] == ["Breed_0", "Breed_1"]
    assert parsed["dogs"].test.class_names[0] == "Breed_60"


def test_flowers_classes_1_to_51_train_with_all_images(parsed: dict) -> None:
    assert parsed["flowers"].train.class_names == [f"class {c}" for c in range(1, 52)]
    assert parsed["flowers"].test.class_names[0] == "class 52"
    assert len(parsed["flowers"].train) + len(parsed["flowers"].test) == 204


def test_aircraft_variants_sorted_by_name_not_file_order(parsed: dict) -> None:
    variants = sorted(fl.aircraft_variants())
    assert parsed["aircraft"].train.class_names == variants[:50]
    assert parsed["aircraft"].test.class_names == variants[50:]
    assert fl.aircraft_variants()[:50] != variants[:50]  # the fake file order differs from the sorted order


@pytest.mark.parametrize(
    ("name", "inner"),
    [
        ("cub", "CUB_200_2011"),
        ("nabirds", "nabirds"),
        ("sop", "Stanford_Online_Products"),
        ("aircraft", "fgvc-aircraft-2013b/data"),
    ],
)
def test_root_can_be_the_folder_above_or_the_dataset_folder_itself(
    fakes: dict[str, Path], name: str, inner: str
) -> None:
    spec = DATASET_SPECS[name]
    assert spec.locate(fakes[name]) == spec.locate(fakes[name] / inner) == (fakes[name] / inner).resolve()


def test_hub_ids_are_documented_for_the_class_split_datasets() -> None:
    with_hub = {name for name, spec in DATASET_SPECS.items() if spec.hub_id}
    assert with_hub == {"cub", "cars", "dogs", "flowers", "aircraft"}
    docs = (Path(__file__).parents[2] / "docs" / "data.md").read_text(encoding="utf-8")
    for name in with_hub:
        assert DATASET_SPECS[name].hub_id in docs
