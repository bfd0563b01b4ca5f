"""A run's data: the source its config names, what the run records about it, and its training loader.

The loader and everything that makes it reproducible (epoch orders, global batches sliced per process, per-sample
augmentation seeds) is :func:`peft_puma.data.make_train_loader`; this module only reads the config's source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets

from ..data.loader import make_train_loader as make_train_batches
from ..data.schema import (
    DATASET_COLUMN,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    ROLE_COLUMN,
    TEST_SPLIT,
    TRAIN_SPLIT,
    column_values,
)
from ..errors import DatasetLayoutError, InvalidConfigError
from .config import DataConfig

column = column_values  # temporary alias, removed once every caller imports column_values from peft_puma.data.schema
__all__ = ["column", "dataset_sizes", "describe_source", "load_unified", "make_train_batches", "select_datasets"]


def load_unified(config: DataConfig) -> datasets.DatasetDict:
    """The ``{"train", "test"}`` splits of the configured source, restricted to ``config.datasets`` when given."""
    if config.dataset_path is not None:
        try:
            data = datasets.load_from_disk(config.dataset_path)
        except FileNotFoundError as error:
            raise DatasetLayoutError(
                f"dataset_path {config.dataset_path!r} holds no dataset saved with save_to_disk ({error})."
            ) from None
    elif config.uml_mini_dir is not None:
        from ..data.uml_mini import open_uml_mini

        data, _ = open_uml_mini(config.uml_mini_dir)
    else:
        from ..data.builder import build_unified_dataset

        data = build_unified_dataset(config.dataset_roots, check_images=config.check_images)
    if not isinstance(data, datasets.DatasetDict) or not {TRAIN_SPLIT, TEST_SPLIT} <= set(data):
        raise DatasetLayoutError(
            f"The data source must be a DatasetDict with {TRAIN_SPLIT!r} and {TEST_SPLIT!r} splits; got "
            f"{list(data) if isinstance(data, datasets.DatasetDict) else type(data).__name__}."
        )
    missing = {IMAGE_COLUMN, LABEL_COLUMN, DATASET_COLUMN, ROLE_COLUMN} - set(data[TRAIN_SPLIT].column_names)
    if missing:
        raise DatasetLayoutError(f"The data source lacks column(s) {sorted(missing)} of the row schema (docs/data.md).")
    return select_datasets(data, config.datasets)


def describe_source(config: DataConfig) -> dict[str, Any]:
    """What a run records about its data source: for UML-mini the build's seed, scale and builder version."""
    if config.uml_mini_dir is not None:
        from ..data.uml_mini import provenance, read_manifest

        return provenance(config.uml_mini_dir, read_manifest(config.uml_mini_dir) or {})
    if config.dataset_path is not None:
        return {"dataset_path": config.dataset_path}
    return {"dataset_roots": dict(config.dataset_roots or {})}


def select_datasets(data: datasets.DatasetDict, names: Sequence[str] | None) -> datasets.DatasetDict:
    """Keep the rows of the named datasets; an unknown name is an error listing those present."""
    if names is None:
        return data
    seen = column_values(data[TRAIN_SPLIT], DATASET_COLUMN) + column_values(data[TEST_SPLIT], DATASET_COLUMN)
    present = list(dict.fromkeys(seen))
    unknown = sorted(set(names) - set(present))
    if unknown:
        raise InvalidConfigError(f"Unknown dataset(s) {unknown} in `datasets`; this source has {present}.")
    wanted = set(names)
    return datasets.DatasetDict(
        {
            split: table.filter(lambda name: name in wanted, input_columns=DATASET_COLUMN)
            for split, table in data.items()
        }
    )


def dataset_sizes(data: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """``{dataset: {train_images, train_classes, test_images, test_classes}}`` in order of appearance."""
    sizes: dict[str, dict[str, int]] = {}
    for split in (TRAIN_SPLIT, TEST_SPLIT):
        names, labels = column_values(data[split], DATASET_COLUMN), column_values(data[split], LABEL_COLUMN)
        classes: dict[str, set[int]] = {}
        for name, label in zip(names, labels):
            classes.setdefault(name, set()).add(label)
            entry = sizes.setdefault(
                name, dict.fromkeys(("train_images", "train_classes", "test_images", "test_classes"), 0)
            )
            entry[f"{split}_images"] += 1
        for name, members in classes.items():
            sizes[name][f"{split}_classes"] = len(members)
    return sizes
