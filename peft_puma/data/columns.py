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

import os
from dataclasses import dataclass, replace
from typing import Any

import datasets

from ..errors import DatasetLayoutError, InvalidConfigError, InvalidInputError
from .collections import Collection, shown, warn
from .folder_tree import SPLIT_FOLDERS
from .images import BadImage, CheckMode, check_on_error, find_bad_images
from .schema import IMAGE_COLUMN, SPLITS, TEST_SPLIT, column_values
from .splits import ClassKey

_INTEGER_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_STRING_TYPES = ("string", "large_string")
IMAGE = datasets.Image()


@dataclass(frozen=True)
class ColumnNames:
    """Which columns of a dataset hold the images, the classes and (optionally) the domains."""

    image: str = IMAGE_COLUMN
    label: str = "label"
    domain: str | None = None


def collection_of(
    data: datasets.Dataset | datasets.DatasetDict, names: ColumnNames, name: str, base: str | None = None
) -> Collection:
    """The collection of a dataset ``datasets`` loaded; ``name``: the source, in messages and as the domain of a
    dataset without ``names.domain``; ``base``: the folder of the data file, against which relative image paths
    resolve (not the current folder)."""
    parts, splits = _parts(data, name)
    pieces = [_piece(part, names, name, split, base) for split, part in zip(splits or [None] * len(parts), parts)]
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
    table: datasets.Dataset, names: ColumnNames, name: str, split: str | None, base: str | None
) -> tuple[datasets.Dataset, list[ClassKey], list[str]]:
    """``(images, classes, domains)`` of one table."""
    where = repr(name) + (f" (split {split!r})" if split else "")
    for role, column in (("image_column", names.image), ("label_column", names.label), ("domain_column", names.domain)):
        if column is not None and column not in table.column_names:
            raise InvalidConfigError(
                f"{role} {column!r} is not a column of {where}; its columns are {', '.join(table.column_names)}. "
                f"Set --{role} to one of them."
            )
    images = _images(table, names.image, where, base)
    classes = _values(table, names.label, "label_column", where)
    if names.domain is None:
        domains = [name] * len(classes)
    else:
        domains = [str(value) for value in _values(table, names.domain, "domain_column", where)]
    return images, classes, domains


def _images(table: datasets.Dataset, column: str, where: str, base: str | None) -> datasets.Dataset:
    feature = table.features[column]
    is_paths = isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES
    if not isinstance(feature, datasets.Image) and not is_paths:
        raise InvalidConfigError(
            f"image_column {column!r} of {where} holds {feature}, not images; it must be a datasets Image feature or "
            "image file paths."
        )
    if is_paths and base is not None:  # a data file's relative paths: against its own folder
        paths = [path if path is None or os.path.isabs(path) else os.path.join(base, path) for path in table[column]]
        return datasets.Dataset.from_dict({IMAGE_COLUMN: paths}, features=datasets.Features({IMAGE_COLUMN: IMAGE}))
    images = table.select_columns([column])
    if column != IMAGE_COLUMN:
        images = images.rename_column(column, IMAGE_COLUMN)
    if is_paths or not feature.decode:
        images = images.cast_column(IMAGE_COLUMN, datasets.Image())
    return images


def check_collection_images(
    collection: Collection, where: str, check: CheckMode, on_error: str, known: list[BadImage] | None = None
) -> Collection:
    """A collection of image file paths (a data file's) with every file checked now, before any model loads: the
    unreadable ones go to its findings (:mod:`.problems`: said with the rest, and fatal unless ``on_error`` is
    ``"skip"``) and out of its rows. A collection of stored images is returned as it is. ``known``: the unreadable
    files as another process's check found them (nothing is checked again)."""
    check_on_error(on_error)
    stored = collection.images.with_format(None).cast_column(IMAGE_COLUMN, datasets.Image(decode=False))
    first = stored[0][IMAGE_COLUMN] if stored.num_rows else None
    if first is None or first.get("bytes") is not None:
        return collection
    paths = [value["path"] if value else "" for value in stored[IMAGE_COLUMN]]  # a row without a path: not found
    bad = list(known) if known is not None else find_bad_images(paths, check)
    findings = collection.findings
    findings.where, findings.on_error = where, on_error
    findings.unreadable, findings.readable = bad, len(paths) - len(bad)
    if not bad:
        return collection
    if len(bad) == len(paths):
        raise InvalidInputError(f"None of the {len(paths)} image file(s) of {where} can be read: {bad[0]}.")
    named = {item.path for item in bad}
    kept = [entry for entry, path in enumerate(paths) if path not in named]
    return replace(
        collection,
        images=collection.images.select(kept),
        domains=[collection.domains[entry] for entry in kept],
        classes=[collection.classes[entry] for entry in kept],
        splits=[collection.splits[entry] for entry in kept] if collection.splits is not None else None,
    )


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
