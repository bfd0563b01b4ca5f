"""The unified dataset a config names: its ``{"train", "test"}`` splits, the datasets kept, what a run records of it.

One of three sources (docs/training.md, "Config keys"): a ``DatasetDict`` saved with ``save_to_disk``
(``dataset_path``), a UML-mini build (``uml_mini_dir``) or the paper's datasets from their official folders
(``dataset_roots``), each checked against the row schema of :mod:`.schema` (docs/data.md). Used by training,
``python -m peft_puma.evaluate`` and the benchmarks, with a :class:`peft_puma.training.DataConfig` (or any object with
its keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import datasets

from ..errors import DatasetLayoutError, InvalidConfigError
from .builder import build_unified_dataset
from .schema import DATASET_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, ROLE_COLUMN, TEST_SPLIT, TRAIN_SPLIT, column_values
from .uml_mini import open_uml_mini, provenance, read_manifest

if TYPE_CHECKING:  # the data keys are defined beside the trainer's; data/ does not import training/ at run time
    from ..training.arguments import DataConfig

__all__ = ["dataset_sizes", "describe_source", "load_unified", "select_datasets"]


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
        data, _ = open_uml_mini(config.uml_mini_dir)
    else:
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
