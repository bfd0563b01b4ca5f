"""The union of docs/spec.md section 7: row schema, globally unique labels, and Hub copies re-split by class."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets
import fake_layouts as fl
import pytest
from PIL import Image

from peft_puma.data import DATASET_SPECS, build_unified_dataset, build_unified_dataset_with_report
from peft_puma.data.schema import column_values, row_features
from peft_puma.errors import DatasetLayoutError, InvalidConfigError

SMALL = ("cub", "nabirds", "dogs", "flowers", "aircraft")


@pytest.fixture(scope="module")
def roots(paper_roots: dict[str, Path]) -> dict[str, Path]:
    return paper_roots


@pytest.fixture(scope="module")
def union(roots: dict[str, Path]) -> datasets.DatasetDict:
    return build_unified_dataset(roots, check_images="exists")


@pytest.fixture(scope="module")
def columns(union: datasets.DatasetDict) -> dict[str, dict[str, list]]:
    """Plain columns of the big union, read once (a column read of 100k rows is not free)."""
    return {side: {c: column_values(union[side], c) for c in ("label", "dataset", "role")} for side in union}


def _block(split: datasets.Dataset | dict[str, list], name: str) -> list[int]:
    if isinstance(split, datasets.Dataset):
        split = {c: column_values(split, c) for c in ("label", "dataset")}
    return [y for y, d in zip(split["label"], split["dataset"]) if d == name]


def test_schema_is_exactly_the_contract(union: datasets.DatasetDict) -> None:
    assert set(union) == {"train", "test"}
    for split in union.values():
        assert split.features == row_features()
        assert split.column_names == ["image", "label", "dataset", "role"]


def test_all_eight_datasets_in_one_union_with_table_class_counts(columns: dict) -> None:
    train_classes = Counter()
    test_classes = Counter()
    for name in DATASET_SPECS:
        train_classes[name] = len(set(_block(columns["train"], name)))
        test_classes[name] = len(set(_block(columns["test"], name)))
    assert train_classes == {n: s.num_train_classes for n, s in DATASET_SPECS.items()}
    assert test_classes == {n: s.num_test_classes for n, s in DATASET_SPECS.items()}
    assert sum(train_classes.values()) == 15_952  # "15.9K train classes" (docs/spec.md section 7)


def test_train_labels_are_contiguous_and_test_labels_follow(columns: dict) -> None:
    train, test = set(columns["train"]["label"]), set(columns["test"]["label"])
    assert train == set(range(len(train)))
    assert test == set(range(len(train), len(train) + len(test)))


def test_label_blocks_follow_the_registry_order(columns: dict) -> None:
    start = 0
    for name, spec in DATASET_SPECS.items():
        assert set(_block(columns["train"], name)) == set(range(start, start + spec.num_train_classes))
        start += spec.num_train_classes
    for name, spec in DATASET_SPECS.items():
        assert set(_block(columns["test"], name)) == set(range(start, start + spec.num_test_classes))
        start += spec.num_test_classes


def test_roles_train_both_and_inshop_query_gallery(columns: dict) -> None:
    assert set(columns["train"]["role"]) == {"train"}
    roles = Counter(zip(columns["test"]["dataset"], columns["test"]["role"]))
    assert roles[("inshop", "query")] == roles[("inshop", "gallery")] == 3985
    assert {r for (d, r) in roles if d != "inshop"} == {"both"}


def test_subset_labels_do_not_depend_on_the_order_of_roots(roots: dict[str, Path]) -> None:
    forward = build_unified_dataset({name: roots[name] for name in SMALL}, check_images="exists")
    backward = build_unified_dataset({name: roots[name] for name in reversed(SMALL)}, check_images="exists")
    assert column_values(forward["train"], "label") == column_values(backward["train"], "label")
    assert column_values(forward["test"], "dataset") == column_values(backward["test"], "dataset")
    assert _block(forward["train"], "nabirds")[0] == 100  # after CUB's 100 training classes


def test_rows_decode_to_the_listed_images(roots: dict[str, Path]) -> None:
    unified = build_unified_dataset({"cub": roots["cub"]})
    row = unified["train"][0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (8, 8)
    assert row["label"] == 0 and row["dataset"] == "cub" and row["role"] == "train"


def test_report_counts_per_dataset(roots: dict[str, Path]) -> None:
    _, report = build_unified_dataset_with_report({"dogs": roots["dogs"], "flowers": roots["flowers"]})
    assert [(s.name, s.train_classes, s.test_images) for s in report.datasets] == [
        ("dogs", 60, 120),
        ("flowers", 51, 102),
    ]
    assert report.num_skipped == 0 and "total skipped images: 0" in str(report)


def test_unknown_names_and_empty_roots_are_config_errors(roots: dict[str, Path]) -> None:
    with pytest.raises(InvalidConfigError, match=r"unknown dataset name\(s\) \['cub2011'\]; known: \['cub', 'cars'"):
        build_unified_dataset({"cub2011": roots["cub"]})
    with pytest.raises(InvalidConfigError, match="roots is empty"):
        build_unified_dataset({})
    with pytest.raises(InvalidConfigError, match="check_images must be one of"):
        build_unified_dataset({"cub": roots["cub"]}, check_images="all")


# --- Hub copies (the Hub is unreachable here: datasets.load_dataset is replaced by an in-memory copy) ---------------


def _hub_copy(names: list[str], per_class: int = 2) -> datasets.DatasetDict:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    image = Image.new("RGB", (8, 8))
    rows = [(c, k) for c in range(len(names)) for k in range(per_class)]
    splits = {}
    for split, parity in (("train", 0), ("test", 1)):  # a classification split, as the Hub copies have
        labels = [c for c, k in rows if k % 2 == parity]
        splits[split] = datasets.Dataset.from_dict({"image": [image] * len(labels), "label": labels}, features=features)
    return datasets.DatasetDict(splits)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> dict[str, datasets.DatasetDict]:
    copies: dict[str, datasets.DatasetDict] = {}

    def load_dataset(hub_id: str, *args, **kwargs) -> datasets.DatasetDict:  # noqa: ANN002, ANN003
        if hub_id not in copies:
            raise ConnectionError(f"offline: cannot reach {hub_id}")
        return copies[hub_id]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return copies


def test_hub_copy_is_merged_and_resplit_by_class_index(fake_hub: dict) -> None:
    fake_hub["Donghyun99/CUB-200-2011"] = _hub_copy([f"{i + 1:03d}.Bird" for i in range(200)])
    unified = build_unified_dataset({"cub": "hub"})
    assert unified["train"].features == row_features()
    assert (unified["train"].num_rows, unified["test"].num_rows) == (200, 200)
    assert set(column_values(unified["train"], "label")) == set(range(100))
    assert isinstance(unified["test"][0]["image"], Image.Image)


def test_hub_copy_of_aircraft_is_split_by_variant_name(fake_hub: dict) -> None:
    variants = fl.aircraft_variants()
    fake_hub["someone/aircraft"] = _hub_copy(variants)
    unified, report = build_unified_dataset_with_report({"aircraft": "someone/aircraft"})
    assert report.datasets[0].source == "someone/aircraft"
    from peft_puma.data.hub import parse_hub

    hub = parse_hub(DATASET_SPECS["aircraft"], "someone/aircraft")
    assert hub.train.class_names == sorted(variants)[:50]
    assert hub.test.class_names == sorted(variants)[50:]


def test_hub_copy_with_the_wrong_class_count_is_refused(fake_hub: dict) -> None:
    fake_hub["someone/dogs"] = _hub_copy([f"breed{i}" for i in range(100)])
    with pytest.raises(DatasetLayoutError, match="found 100 classes with images"):
        build_unified_dataset({"dogs": "someone/dogs"})


def test_unreachable_hub_says_what_to_do(fake_hub: dict) -> None:
    with pytest.raises(
        DatasetLayoutError, match=r"cannot load Hub dataset 'Donghyun99/Stanford-Cars'.*original download"
    ):
        build_unified_dataset({"cars": "hub"})


def test_datasets_without_a_usable_hub_copy_refuse_hub_ids(fake_hub: dict) -> None:
    with pytest.raises(DatasetLayoutError, match=r"inshop .*no usable Hub copy"):
        build_unified_dataset({"inshop": "hub"})
    with pytest.raises(DatasetLayoutError, match=r"sop .*no Hub copy is supported"):
        build_unified_dataset({"sop": "JamieSJS/stanford-online-products"})
