"""A dataset ``datasets`` opened (a Hub dataset, local Parquet/CSV/JSON files, an ``imagefolder``, a ``save_to_disk``
folder of any columns) read as a :class:`~.collections.Collection`, through the columns a user names
(docs/collections.md, "Columns").

``image_column`` (default ``image``) holds the images (a ``datasets.Image`` feature, or file paths); ``label_column``
(default ``label``) the classes: strings, integers or a ``ClassLabel`` (read as its names); ``domain_column`` (default:
none, the whole dataset is one domain named after it) the domains, for several collections in one table. A name that
is not a column is refused naming the columns there are. The image column is kept as it is stored (the bytes or paths
stay in the dataset's own files; nothing is copied), and decoded lazily.

A ``DatasetDict`` with a ``test`` split keeps its splits (``train``, ``validation`` and ``test``; the other names
datasets uses for them, e.g. ``valid``, count as theirs): a source that already has splits is used as it is. Any other
is one pool of images, split by class (:mod:`.splits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets

from ..errors import DatasetLayoutError, InvalidConfigError
from .collections import Collection, shown, warn
from .folder_tree import SPLIT_FOLDERS
from .schema import IMAGE_COLUMN, SPLITS, TEST_SPLIT, column_values
from .splits import ClassKey

_INTEGER_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_STRING_TYPES = ("string", "large_string")


@dataclass(frozen=True)
class ColumnNames:
    """Which columns of a dataset hold the images, the classes and (optionally) the domains."""

    image: str = IMAGE_COLUMN
    label: str = "label"
    domain: str | None = None


def collection_of(data: datasets.Dataset | datasets.DatasetDict, names: ColumnNames, name: str) -> Collection:
    """The collection of a dataset ``datasets`` loaded; ``name``: the source, in messages and as the domain of a
    dataset without ``names.domain``."""
    parts, splits = _parts(data, name)
    pieces = [_piece(part, names, name, split) for split, part in zip(splits or [None] * len(parts), parts)]
    images = datasets.concatenate_datasets([piece[0] for piece in pieces]) if len(pieces) > 1 else pieces[0][0]
    row_splits = [split for split, piece in zip(splits, pieces) for _ in piece[1]] if splits else None
    return Collection(
        images,
        [domain for piece in pieces for domain in piece[2]],
        [key for piece in pieces for key in piece[1]],
        row_splits,
    )


def _parts(data: Any, name: str) -> tuple[list[datasets.Dataset], list[str] | None]:
    """The tables of ``data`` and, where it has a test split, the split each one is (else ``None``: one pool)."""
    if isinstance(data, datasets.Dataset):
        return [data], None
    if not isinstance(data, datasets.DatasetDict) or not data:
        raise DatasetLayoutError(f"{name!r} is not a dataset of images (datasets gave {type(data).__name__}).")
    ours = {split: SPLIT_FOLDERS.get(split.lower()) for split in data}
    if TEST_SPLIT not in ours.values():
        return [data[split] for split in data], None
    kept = [split for split in data if ours[split] in SPLITS]
    ignored = [split for split in data if split not in kept]
    if ignored:
        warn(
            f"{name!r}: split(s) {shown(ignored)} ignored (kept: {', '.join(kept)}; the splits used are train, "
            "validation and test)."
        )
    return [data[split] for split in kept], [ours[split] for split in kept]


def _piece(
    table: datasets.Dataset, names: ColumnNames, name: str, split: str | None
) -> tuple[datasets.Dataset, list[ClassKey], list[str]]:
    """``(images, classes, domains)`` of one table."""
    where = repr(name) + (f" (split {split!r})" if split else "")
    for role, column in (("image_column", names.image), ("label_column", names.label), ("domain_column", names.domain)):
        if column is not None and column not in table.column_names:
            raise InvalidConfigError(
                f"{role} {column!r} is not a column of {where}; its columns are {', '.join(table.column_names)}. "
                f"Set --{role} to one of them."
            )
    images = _images(table, names.image, where)
    classes = _values(table, names.label, "label_column", where)
    if names.domain is None:
        domains = [name] * len(classes)
    else:
        domains = [str(value) for value in _values(table, names.domain, "domain_column", where)]
    return images, classes, domains


def _images(table: datasets.Dataset, column: str, where: str) -> datasets.Dataset:
    feature = table.features[column]
    is_paths = isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES
    if not isinstance(feature, datasets.Image) and not is_paths:
        raise InvalidConfigError(
            f"image_column {column!r} of {where} holds {feature}, not images; it must be a datasets Image feature or "
            "image file paths."
        )
    images = table.select_columns([column])
    if column != IMAGE_COLUMN:
        images = images.rename_column(column, IMAGE_COLUMN)
    if is_paths or not feature.decode:
        images = images.cast_column(IMAGE_COLUMN, datasets.Image())
    return images


def _values(table: datasets.Dataset, column: str, role: str, where: str) -> list[ClassKey]:
    """A label or domain column as class keys: a ``ClassLabel``'s names, strings, or integers."""
    feature = table.features[column]
    values = column_values(table, column)
    if isinstance(feature, datasets.ClassLabel):
        values = [feature.names[value] if value is not None and value >= 0 else None for value in values]
    elif not (isinstance(feature, datasets.Value) and feature.dtype in _INTEGER_TYPES + _STRING_TYPES):
        raise InvalidConfigError(
            f"{role} {column!r} of {where} holds {feature}; labels and domains must be strings, integers or a "
            "ClassLabel."
        )
    missing = sum(value is None for value in values)
    if missing:
        raise DatasetLayoutError(
            f"{missing} row(s) of {where} have no value in {role} {column!r}; every image needs one."
        )
    return values
