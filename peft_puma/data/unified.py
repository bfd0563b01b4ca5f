"""The unified dataset a config names: its ``train`` and ``test`` splits (and an optional ``validation`` split), the
datasets kept, what a run records of it.

One of three sources (docs/training.md, "Config keys"): ``dataset_path`` (a ``DatasetDict`` saved with
``save_to_disk`` in the row schema, or a user's collection: a folder tree of images, or any dataset ``datasets``
opens, docs/collections.md), a UML-mini build (``uml_mini_dir``) or the paper's datasets from their official folders
(``dataset_roots``), each made into the row schema of :mod:`.schema` (docs/data.md). Used by training,
``python -m peft_puma.evaluate`` and the benchmarks, with a :class:`peft_puma.data.config.DataConfig` (or any object
with its keys).

A collection without splits of its own is split by class (:mod:`.splits`): training draws the split and records it
(:class:`LoadedSource` ``.split``, which the trainer writes into its run folder); scoring a collection reuses a run's
record when given one, so that ``evaluate`` scores exactly the classes the run held out. Scoring needs only the split
it scores: data of test classes alone (a trained adapter on a new collection) is scored as it is.

The ``validation`` split (:data:`.schema.VALIDATION_SPLIT`: classes disjoint from train and test, with the test split's
roles) is where recipes are chosen without reading the test split. A UML-mini build has one; the paper's benchmarks and
most saved DatasetDicts do not, so whoever scores it asks for it with :func:`scored_split`, which names the splits
present when it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np

from ..errors import DatasetLayoutError, InvalidConfigError
from .builder import build_unified_dataset
from .collections import (
    Collection,
    check_classes,
    check_queries,
    draw_split,
    lonely_classes,
    shown,
    split_by_record,
    split_codes,
    to_unified,
)
from .columns import ColumnNames
from .images import BadImage
from .schema import (
    DATASET_COLUMN,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    ROLE_COLUMN,
    SPLITS,
    TEST_SPLIT,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
    column_array,
    column_values,
)
from .sources import open_source
from .splits import SplitRecord, SplitRule
from .uml_mini import open_uml_mini, provenance, read_manifest

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = [
    "LoadedSource",
    "dataset_sizes",
    "describe_source",
    "load_source",
    "load_unified",
    "scored_split",
    "select_datasets",
]

TRAINING = "training"
SCORING = "scoring"
SCORED_SPLITS: tuple[str, ...] = (TEST_SPLIT, VALIDATION_SPLIT)
"""The splits an evaluation may score: the test split (the published protocol) or the validation split."""


@dataclass
class LoadedSource:
    """The unified dataset of a config, what a run records of its source, and the class split of a collection that
    had none (``None`` for sources with their own splits)."""

    data: datasets.DatasetDict
    description: dict[str, Any]
    split: SplitRecord | None = None
    unreadable: list[BadImage] | None = None  # a collection's image files its check could not read (None: no check)


def load_unified(config: DataConfig) -> datasets.DatasetDict:
    """The ``train`` and ``test`` splits of the configured source, and its ``validation`` split where it has one,
    restricted to ``config.datasets`` when given."""
    return load_source(config).data


def load_source(
    config: DataConfig,
    *,
    purpose: str = TRAINING,
    record: SplitRecord | None = None,
    unreadable: list[BadImage] | None = None,
) -> LoadedSource:
    """The configured source as a :class:`LoadedSource`.

    ``purpose``: :data:`TRAINING` needs ``train`` and ``test`` splits; :data:`SCORING` only the split it scores
    (:func:`scored_split` names a missing one). ``record``: a run's split record, applied to a collection without
    splits instead of drawing one (its classes keep their recorded split; classes it does not know are test classes).
    ``unreadable``: a collection's unreadable files as another process's load of the same source found them
    (``LoadedSource.unreadable``): its image files are then not checked again. With ``record``, this is how the
    other processes of a multi-process run read what the main process read, without repeating its work.
    """
    split = None
    if config.dataset_path is not None:
        kind, opened = open_source(
            config.dataset_path,
            ColumnNames(config.image_column, config.label_column, config.domain_column),
            config_name=config.dataset_config,
            revision=config.dataset_revision,
            check=config.check_images,
            on_error=config.on_error,
            unreadable=unreadable,
        )
        if isinstance(opened, Collection):
            collection = opened.only(config.datasets)
            description = {**_path_description(config, kind), **collection.found}
            data, split = _split_collection(collection, config, description, record)
            description["split"] = _split_description(collection, split, record)
            _check_splits(data, purpose)
            return LoadedSource(data, description, split, list(collection.findings.unreadable))
        data, description = opened, describe_source(config)
    elif config.uml_mini_dir is not None:
        data, _ = open_uml_mini(config.uml_mini_dir)
        description = describe_source(config)
    else:
        data = build_unified_dataset(config.dataset_roots, check_images=config.check_images)
        description = describe_source(config)
    _check_splits(data, purpose)
    return LoadedSource(select_datasets(data, config.datasets), description, split)


def _split_collection(
    collection: Collection, config: DataConfig, description: dict[str, Any], record: SplitRecord | None
) -> tuple[datasets.DatasetDict, SplitRecord | None]:
    """The row-schema splits of a collection: its own, the record's, or drawn by the config's rule."""
    where = repr(config.dataset_path)
    findings = collection.findings
    findings.where = where
    if collection.splits is not None:
        row_splits, split = split_codes(collection.splits), None
    elif record is not None:
        row_splits, split = split_by_record(collection, record), record
    else:
        try:
            check_classes(collection, where)
        except DatasetLayoutError as error:  # said with everything else found, then nothing is split
            findings.problem(str(error))
            findings.settle()
        rule = SplitRule(tuple(config.split_fractions), config.split_seed)
        split = draw_split(collection, rule, description)
        row_splits = split_by_record(collection, split)
    for problem in check_queries(collection, row_splits, where):
        findings.problem(problem)
    lonely = lonely_classes(collection, row_splits)
    if lonely:
        findings.note(
            f"{len(lonely)} held-out class(es) of {where} have a single image ({shown(lonely)}): they stay in the "
            "gallery, never queries (nothing else of their class to retrieve)"
        )
    findings.settle()
    return to_unified(collection, row_splits), split


def _split_description(collection: Collection, split: SplitRecord | None, record: SplitRecord | None) -> Any:
    """How the rows were split, for the run file: the source's own splits, a run's record, or the seeded rule."""
    if collection.splits is not None:
        return "the source's own splits"
    if record is not None:
        unknown = sum(
            1
            for domain, members in collection.class_lists().items()
            for key in members
            if record.split_of(domain, key) is None
        )
        return f"a run's split record ({unknown} class(es) it does not know scored as test classes)"
    assert split is not None and split.rule is not None
    return {"split_seed": split.rule.seed, "split_fractions": list(split.rule.fractions)}


def _path_description(config: DataConfig, kind: str) -> dict[str, Any]:
    """A collection's ``dataset_path``: its kind, and the keys that say how it was read."""
    description: dict[str, Any] = {"dataset_path": config.dataset_path, "kind": kind}
    for name in ("dataset_config", "dataset_revision", "domain_column"):
        if getattr(config, name) is not None:
            description[name] = getattr(config, name)
    return description


def _check_splits(data: Any, purpose: str) -> None:
    """The splits ``purpose`` needs, each with the row schema's columns."""
    needed = {TRAIN_SPLIT, TEST_SPLIT} if purpose == TRAINING else set()
    if not isinstance(data, datasets.DatasetDict) or not needed <= set(data) or not data:
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
    """What a run records about its data source, without reading it: for UML-mini the build's seed, scale and builder
    version. A loaded collection's :class:`LoadedSource` ``.description`` says more (its kind, layout, split)."""
    if config.uml_mini_dir is not None:
        return provenance(config.uml_mini_dir, read_manifest(config.uml_mini_dir) or {})
    if config.dataset_path is not None:
        return {"dataset_path": config.dataset_path}
    return {"dataset_roots": dict(config.dataset_roots or {})}


def select_datasets(data: datasets.DatasetDict, names: Sequence[str] | None) -> datasets.DatasetDict:
    """Keep the rows of the named datasets; an unknown name is an error listing those present.

    Rows are picked by index (``select``), which writes no cache file beside a saved dataset (a user's may be
    read-only)."""
    if names is None:
        return data
    columns = {split: column_values(table, DATASET_COLUMN) for split, table in data.items()}
    present = list(dict.fromkeys(name for values in columns.values() for name in values))
    unknown = sorted(set(names) - set(present))
    if unknown:
        raise InvalidConfigError(f"Unknown dataset(s) {unknown} in `datasets`; this source has {present}.")
    wanted = set(names)
    return datasets.DatasetDict(
        {
            split: table.select([row for row, name in enumerate(columns[split]) if name in wanted])
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
    for split in splits:  # in arrays: a million rows take tens of milliseconds
        encoded = column_array(data[split], DATASET_COLUMN).combine_chunks().dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        names = encoded.dictionary.to_pylist()  # in order of first appearance
        labels = column_array(data[split], LABEL_COLUMN).to_numpy().astype(np.int64)
        width = max(1, len(names))
        images = np.bincount(codes, minlength=len(names))
        pairs = np.unique((labels - labels.min(initial=0)) * width + codes)  # each (label, dataset) once
        classes = np.bincount(pairs % width, minlength=len(names))
        for code, name in enumerate(names):
            entry = sizes.setdefault(name, dict.fromkeys(keys, 0))
            entry[f"{split}_images"], entry[f"{split}_classes"] = int(images[code]), int(classes[code])
    return sizes
