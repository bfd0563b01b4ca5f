"""A dataset saved with ``save_to_disk``, opened as a user names it: a folder and a split."""

from __future__ import annotations

import os
from typing import Any

import datasets

from ..errors import InvalidInputError


def load_split(path: str, split: str) -> Any:
    """The ``split`` of a dataset saved with ``save_to_disk`` (a plain ``Dataset`` is its own only split)."""
    if not os.path.isdir(path):
        raise InvalidInputError(f"The dataset folder {path!r} does not exist (give a folder saved with save_to_disk).")
    try:
        data = datasets.load_from_disk(path)
    except FileNotFoundError as error:  # a folder that is not a saved dataset
        raise InvalidInputError(f"{path!r} is not a dataset saved with save_to_disk ({error}).") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise InvalidInputError(f"{path} has splits {list(data)}, not {split!r}.")
        return data[split]
    return data
