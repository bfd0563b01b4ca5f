"""The unified dataset a config names: its ``train`` and ``test`` splits (and an optional ``validation`` split), the
datasets kept, what a run records of it.

One of three sources (docs/training.md, "Config keys"): a ``DatasetDict`` saved with ``save_to_disk``
(``dataset_path``), a UML-mini build (``uml_mini_dir``) or the paper's datasets from their official folders
(``dataset_roots``), each checked against the row schema of :mod:`.schema` (docs/data.md). Used by training,
``python -m peft_puma.evaluate`` and the benchmarks, with a :class:`peft_puma.data.config.DataConfig` (or any object
with its keys).

The ``validation`` split (:data:`.schema.VALIDATION_SPLIT`: classes disjoint from train and test, with the test split's
roles) is where recipes are chosen without reading the test split. A UML-mini build has one; the paper's benchmarks and
most saved DatasetDicts do not, so whoever scores it asks for it with :func:`scored_split`, which names the splits
present when it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import datasets

from ..errors import DatasetLayoutError, InvalidConfigError
from .builder import build_unified_dataset
from .schema import (
    DATASET_COLUMN,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    ROLE_COLUMN,
    SPLITS,
    TEST_SPLIT,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
    column_values,
)
from .uml_mini import open_uml_mini, provenance, read_manifest

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = ["dataset_sizes", "describe_source", "load_unified", "scored_split", "select_datasets"]

SCORED_SPLITS: tuple[str, ...] = (TEST_SPLIT, VALIDATION_SPLIT)
"""The splits an evaluation may score: the test split (the published protocol) or the validation split."""


def load_unified(config: DataConfig) -> datasets.DatasetDict:
    """The ``train`` and ``test`` splits of the configured source, and its ``validation`` split where it has one,
    restricted to ``config.datasets`` when given."""
    if config.dataset_path is not None:
        try:
            data = datasets.load_from_disk(config.dataset_path)
        except FileNotFoundError as error:
            raise DatasetLayoutError(
                f"dataset_path {config.dataset_path!r} holds no dataset saved with save_to_disk ({error})."
            ) from None
    elif config.uml_mini_dir is not None:
        data, _ = open_uml_mini(config.uml_mini_dir)
    else:
        data = build_unified_dataset(config.dataset_roots, check_images=config.check_images)
    if not isinstance(data, datasets.DatasetDict) or not {TRAIN_SPLIT, TEST_SPLIT} <= set(data):
        raise DatasetLayoutError(
            f"The data source must be a DatasetDict with {TRAIN_SPLIT!r} and {TEST_SPLIT!r} splits; got "
            f"{list(data) if isinstance(data, datasets.DatasetDict) else type(data).__name__}."
        )
    for split in SPLITS:
        if split not in data:
            continue
        missing = {IMAGE_COLUMN, LABEL_COLUMN, DATASET_COLUMN, ROLE_COLUMN} - set(data[split].column_names)
        if missing:
            raise DatasetLayoutError(
                f"The {split!r} split of the data source lacks column(s) {sorted(missing)} of the row schema "
                "(docs/data.md)."
            )
    return select_datasets(data, config.datasets)


def scored_split(data: datasets.DatasetDict, split: str, asked_by: str) -> datasets.Dataset:
    """``data[split]``, the split an evaluation scores; ``asked_by`` (the key or option that chose it) is named in the
    one-line error raised when the source has no such split, e.g. ``eval_split: validation`` on the paper's
    benchmarks, which have no validation split."""
    if split not in SCORED_SPLITS:
        raise InvalidConfigError(f"{asked_by} must be one of {', '.join(SCORED_SPLITS)}; got {split!r}.")
    if split not in data:
        raise InvalidConfigError(
            f"{asked_by} {split!r}: the data source has no {split!r} split (it has {', '.join(data)}). Score the "
            f"{TEST_SPLIT!r} split (the default) or use a source with a {split!r} split (a UML-mini build has one, "
            "docs/data.md)."
        )
    return data[split]


def describe_source(config: DataConfig) -> dict[str, Any]:
    """What a run records about its data source: for UML-mini the build's seed, scale and builder version."""
    if config.uml_mini_dir is not None:
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
    """``{dataset: {train_images, train_classes, test_images, test_classes}}`` in order of appearance; with a
    validation split, ``validation_images`` and ``validation_classes`` come between the train and test counts.

    Runs record these counts and compare them on resume, so data without a validation split keeps exactly the keys
    (and order) it always had."""
    splits = [split for split in SPLITS if split in data]
    keys = [f"{split}_{count}" for split in splits for count in ("images", "classes")]
    sizes: dict[str, dict[str, int]] = {}
    for split in splits:
        names, labels = column_values(data[split], DATASET_COLUMN), column_values(data[split], LABEL_COLUMN)
        classes: dict[str, set[int]] = {}
        for name, label in zip(names, labels):
            classes.setdefault(name, set()).add(label)
            entry = sizes.setdefault(name, dict.fromkeys(keys, 0))
            entry[f"{split}_images"] += 1
        for name, members in classes.items():
            sizes[name][f"{split}_classes"] = len(members)
    return sizes
