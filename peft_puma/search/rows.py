"""What each row of an index is: an image file of a folder, or a row of a saved dataset (docs/search.md).

The manifest keeps the rows so that results can name them and the grid can show them: for a folder its absolute path
and the images' paths relative to it (plus the files skipped as unreadable); for a dataset its absolute path, the
split, and the ``label``, ``dataset`` and ``role`` columns where present (images are read back from the dataset).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..data.folder_tree import names_in_tree
from ..data.saved import load_split
from ..data.schema import CLASS_NAME_COLUMN, DATASET_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, ROLE_COLUMN, column_values
from ..data.splits import SplitRecord

_DATASET_FIELDS = {
    LABEL_COLUMN: "labels",
    CLASS_NAME_COLUMN: "class_names",
    DATASET_COLUMN: "datasets",
    ROLE_COLUMN: "roles",
}


def folder_rows(folder: str, paths: Sequence[str], skipped: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """Rows of images under ``folder`` (``paths`` relative to it, in index order); where the folder is a folder tree
    (docs/collections.md), each image's class as training reads it, and its collection where there are several (one
    collection is the folder itself)."""
    rows = {
        "source": "images",
        "folder": os.path.abspath(folder),
        "num_rows": len(paths),
        "paths": list(paths),
        "skipped": list(skipped),
    }
    names = names_in_tree(folder, list(paths))
    if names is not None:
        collections, rows["class_names"] = names
        if len({name for name in collections if name is not None}) > 1:  # domain folders: name each image's
            rows["datasets"] = collections
    return rows


def dataset_rows(
    path: str, split: str, dataset: Any, split_record: str | None = None, on_error: str = "stop"
) -> dict[str, Any]:
    """Rows of a split of a saved dataset, in row order, with the columns the results report; ``split_record``: the
    run's class split a collection was read with (docs/collections.md), and ``on_error``: ``"skip"`` where its
    unreadable images were left out, so that its rows are read back alike (queries from the same collection too)."""
    rows: dict[str, Any] = {"source": "dataset", "dataset": os.path.abspath(path), "split": split}
    if split_record is not None:
        rows["split_record"] = os.path.abspath(split_record)
    if on_error != "stop":
        rows["on_error"] = on_error
    rows["num_rows"] = dataset.num_rows
    for name, plural in _DATASET_FIELDS.items():
        rows[plural] = column_values(dataset, name) if name in dataset.column_names else None
    return rows


def describe_row(rows: dict[str, Any], row: int) -> dict[str, Any]:
    """The JSON fields of one row: ``row`` and ``path`` (folder) or ``label``, ``class_name`` (a collection's),
    ``dataset`` (the collection), ``role`` (dataset)."""
    described: dict[str, Any] = {"row": int(row)}
    if rows["source"] == "images":
        described["path"] = os.path.join(rows["folder"], rows["paths"][row])
        for name, plural in ((DATASET_COLUMN, "datasets"), (CLASS_NAME_COLUMN, "class_names")):
            if rows.get(plural) is not None and rows[plural][row] is not None:
                described[name] = rows[plural][row]
    else:
        for name, plural in _DATASET_FIELDS.items():
            if rows.get(plural) is not None:
                described[name] = rows[plural][row]
    return described


def class_of(rows: dict[str, Any], row: int) -> tuple[Any, Any] | None:
    """``(dataset, label)`` of a dataset row (labels are compared within a dataset), ``None`` where unknown."""
    if rows["source"] != "dataset" or rows.get("labels") is None:
        return None
    names = rows.get("datasets")
    return (names[row] if names is not None else None, rows["labels"][row])


class RowImages:
    """Opens the images of index rows for the grid (a missing file or dataset gives ``None``, not an error)."""

    def __init__(self, rows: dict[str, Any]) -> None:
        self.rows = rows
        self._split: Any = None

    def __call__(self, row: int) -> Image.Image | None:
        try:
            if self.rows["source"] == "images":
                with Image.open(os.path.join(self.rows["folder"], self.rows["paths"][row])) as image:
                    return image.convert("RGB")
            if self._split is None:
                record = self.rows.get("split_record")
                split = load_split(
                    self.rows["dataset"],
                    self.rows["split"],
                    SplitRecord.read(record) if record else None,
                    self.rows.get("on_error", "stop"),
                )
                self._split = split.select_columns([IMAGE_COLUMN])
            return self._split[int(row)][IMAGE_COLUMN].convert("RGB")
        except (OSError, ValueError):  # moved or deleted since the index was built: the grid shows a blank tile
            return None
