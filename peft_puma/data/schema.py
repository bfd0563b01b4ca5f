"""The row schema shared by every dataset of the unified benchmark (docs/data.md).

This is a contract other parts of peft_puma code against (training, evaluation, UML-mini): one ``datasets.Dataset`` per
split with exactly these columns.

- ``image``: ``datasets.Image()``; rows built from folders hold the file path and decode lazily.
- ``label``: int64, globally unique across all datasets and both splits of one union. Training labels are contiguous
  ``0 .. T-1`` (``T`` = training classes of the union, so they index the loss proxies directly, docs/losses.md);
  test labels follow as ``T .. T+S-1``. Within each split, datasets take consecutive blocks in the order of
  :data:`peft_puma.data.DATASET_SPECS` (see :func:`peft_puma.data.builder.union_parsed`).
- ``dataset``: the short name of the dataset the row comes from (``"cub"``, ``"cars"``, ...).
- ``role``: ``"train"`` for training rows; for test rows ``"both"`` (leave-one-out: the row is a query and part of the
  gallery at once) or, for In-shop, ``"query"`` / ``"gallery"`` (its official lists).
"""

from __future__ import annotations

from typing import Any, Final

import datasets

from .roles import ROLE_BOTH, ROLE_GALLERY, ROLE_QUERY, ROLE_TRAIN  # noqa: F401  (re-exported: part of the row contract)

IMAGE_COLUMN: Final = "image"
LABEL_COLUMN: Final = "label"
DATASET_COLUMN: Final = "dataset"
ROLE_COLUMN: Final = "role"
CLASS_NAME_COLUMN: Final = "class_name"
"""An optional column: the class as its source names it (a folder's name, a ``ClassLabel`` name), written for a
user's collection so that retrieval examples and search results name classes rather than numbers."""
PIXEL_VALUES: Final = "pixel_values"


TRAIN_SPLIT: Final = "train"
TEST_SPLIT: Final = "test"
VALIDATION_SPLIT: Final = "validation"
"""Optional third split: classes disjoint from train and test (carved from the training classes), with the test
split's roles. Every choice of a recipe is made on it, so the test split is read once per final run (UML-mini has one;
the paper's benchmarks do not)."""
SPLITS: Final = (TRAIN_SPLIT, VALIDATION_SPLIT, TEST_SPLIT)
"""Every split a unified dataset may have, in label order: training classes ``0 .. T-1``, then validation, then test."""


def row_features() -> datasets.Features:
    """The exact features of every split of a unified dataset (a fresh object: ``Features`` is mutable)."""
    return datasets.Features(
        {
            IMAGE_COLUMN: datasets.Image(),
            LABEL_COLUMN: datasets.Value("int64"),
            DATASET_COLUMN: datasets.Value("string"),
            ROLE_COLUMN: datasets.Value("string"),
        }
    )


def column_array(dataset: datasets.Dataset, name: str) -> Any:
    """One column as an Arrow ``ChunkedArray`` (rows in the dataset's order), without a Python object per row.

    A split picked by ``select`` reads its rows through an index of rows, which ``datasets`` gathers one row at a time
    in Python (seconds per million rows); Arrow's ``take`` gathers the column in one call.
    """
    column = dataset.data.column(name)
    indices = getattr(dataset, "_indices", None)  # datasets' index of rows, where the rows were selected
    if indices is not None:
        column = column.take(indices.column(0))
    return column


def column_values(dataset: datasets.Dataset, name: str) -> list[Any]:
    """One column as a plain list, fast, ignoring any transform set with ``with_transform``.

    ``dataset[name]`` returns a lazy ``Column`` in datasets >= 4 whose iteration reads row by row (seconds for the
    ~140K rows of the union); this reads the Arrow column in one go.
    """
    return column_array(dataset, name).to_pylist()
