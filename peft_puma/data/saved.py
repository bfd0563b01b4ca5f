"""A dataset opened as a user names it for ``embed`` and ``search``: a folder and a split.

The folder is a dataset saved with ``save_to_disk`` (read as it is), or any source ``dataset_path`` takes (a folder
tree of images, data files: docs/collections.md), made into the row schema; a collection without splits is
split as the adapter's run split it (``record``, its split record), or by the default rule.
"""

from __future__ import annotations

import os
from typing import Any

import datasets

from ..errors import InvalidInputError
from .config import DataConfig
from .sources import SAVED, source_kind
from .splits import SplitRecord
from .unified import SCORING, load_source


def load_split(path: str, split: str, record: SplitRecord | None = None, on_error: str = "stop") -> Any:
    """The ``split`` of the dataset at ``path`` (a plain saved ``Dataset`` is its own only split); ``on_error``: an
    unreadable image of a collection (a folder tree, data files) stops the load or is left out (docs/collections.md)."""
    if not os.path.exists(path):
        raise InvalidInputError(f"The dataset folder {path!r} does not exist (give a folder saved with save_to_disk).")
    if source_kind(path) != SAVED:
        return _collection_split(path, split, record, on_error)
    try:
        data = datasets.load_from_disk(path)
    except FileNotFoundError as error:  # a folder that is not a saved dataset
        raise InvalidInputError(f"{path!r} is not a dataset saved with save_to_disk ({error}).") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise InvalidInputError(f"{path} has splits {list(data)}, not {split!r}.")
        return data[split]
    return data


def _collection_split(path: str, split: str, record: SplitRecord | None, on_error: str) -> datasets.Dataset:
    data = load_source(DataConfig(dataset_path=path, on_error=on_error).validate(), purpose=SCORING, record=record).data
    if split not in data:
        raise InvalidInputError(f"{path} has splits {list(data)}, not {split!r}.")
    return data[split]
