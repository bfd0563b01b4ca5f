"""A user's collection, whatever it came from, as the unified dataset of the row schema (docs/collections.md).

A folder tree (:mod:`.folder_tree`) and a dataset ``datasets`` opens (:mod:`.columns`) both become a
:class:`Collection`: every image with its domain and class, and the source's own split where it has one. A collection
without splits is split by class (:mod:`.splits`); :func:`to_unified` then writes the row schema of docs/data.md, so
that training, evaluation and search read a user's images exactly as they read UML-mini:

- labels: the training classes ``0 .. T-1``, then the validation classes, then the test classes; within a split,
  domains in name order and classes in sorted order; a class is one ``(domain, class)`` pair;
- ``dataset``: the domain; ``role``: ``train`` for training rows, and for validation and test rows ``both``
  (leave-one-out, as UML-mini's), except the rows of a class with a single image there, which are ``gallery`` rows:
  with nothing else of its class to find they would be queries without an answer, so they stay distractors only;
- rows of a split ordered by label, then by their order in the source (a folder tree's: path order), so that the same
  images give the same rows whichever source kind holds them.

The images are never copied: a folder tree's rows hold file paths, a loaded dataset's rows its own image column
(``select`` of row indices), and both decode lazily, in the DataLoader's workers.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import datasets
import pyarrow as pa

from ..errors import DatasetLayoutError, InvalidConfigError
from .problems import Findings, is_main_process
from .roles import ROLE_BOTH, ROLE_GALLERY, ROLE_TRAIN
from .schema import CLASS_NAME_COLUMN, DATASET_COLUMN, LABEL_COLUMN, ROLE_COLUMN, SPLITS, TEST_SPLIT, TRAIN_SPLIT
from .splits import ClassKey, SplitRecord, SplitRule

_SHOWN = 3  # classes named in a warning (the rest are counted)


@dataclass
class Collection:
    """Every image of a source with its domain and class (``splits``: the source's own split of each row, if any).

    ``images`` has one column, ``image`` (``datasets.Image()``); ``rows``: the row of ``images`` each entry is, where
    some domains were left out (:meth:`only`; the table itself is never cut, which could write beside a saved
    dataset); ``findings``: what the reader found wrong or left out on the way (:mod:`.problems`), settled once the
    split adds its own; ``found``: what the reader found out about the source (a folder tree's layout and counts),
    which the run records.
    """

    images: datasets.Dataset
    domains: list[str]
    classes: list[ClassKey]
    splits: list[str] | None = None
    findings: Findings = field(default_factory=lambda: Findings("the source"))
    found: dict[str, Any] = field(default_factory=dict)
    rows: list[int] | None = None

    def only(self, names: Sequence[str] | None) -> Collection:
        """The entries of the domains ``names`` (all for ``None``); an unknown name is refused, naming those there
        are (the ``datasets`` key)."""
        if names is None:
            return self
        present = sorted(set(self.domains))
        unknown = sorted(set(names) - set(present))
        if unknown:
            raise InvalidConfigError(f"Unknown dataset(s) {unknown} in `datasets`; this source has {present}.")
        kept = [entry for entry, domain in enumerate(self.domains) if domain in set(names)]
        rows = self.rows or range(len(self.domains))
        return replace(
            self,
            domains=[self.domains[entry] for entry in kept],
            classes=[self.classes[entry] for entry in kept],
            splits=[self.splits[entry] for entry in kept] if self.splits is not None else None,
            rows=[rows[entry] for entry in kept],
        )

    def class_lists(self) -> dict[str, list[ClassKey]]:
        """``{domain: its classes, sorted}``, domains in name order."""
        members: dict[str, set[ClassKey]] = defaultdict(set)
        for domain, key in zip(self.domains, self.classes):
            members[domain].add(key)
        return {domain: sorted(members[domain]) for domain in sorted(members)}


def check_classes(collection: Collection, where: str) -> None:
    """A collection to be split needs two classes in every domain: one to train on, one to test on."""
    classes = collection.class_lists()
    if sum(len(members) for members in classes.values()) < 2:
        (domain, members), *_ = classes.items()
        raise DatasetLayoutError(
            f"{where} holds a single class ({members[0]!r} of domain {domain!r}); retrieval needs at least 2 classes "
            "(one to train on, one to test on): add classes."
        )
    for domain, members in classes.items():
        if len(members) < 2:
            raise DatasetLayoutError(
                f"The domain {domain!r} of {where} has a single class ({members[0]!r}); every domain needs at least 2 "
                "classes (one to train on, one to test on): add classes to it, or leave it out."
            )


def split_by_record(collection: Collection, record: SplitRecord) -> list[str]:
    """Each row's split: the one the record gives its class, and the test split for a class the record does not
    know (a new collection, or classes added since the run: none of them was trained on)."""
    return [record.split_of(domain, key) or TEST_SPLIT for domain, key in zip(collection.domains, collection.classes)]


def draw_split(collection: Collection, rule: SplitRule, source: dict) -> SplitRecord:
    """The seeded class split of a collection without splits (:mod:`.splits`; its one-image classes train first)."""
    sizes = Counter(zip(collection.domains, collection.classes))
    lonely: dict[str, set[ClassKey]] = defaultdict(set)
    for (domain, key), count in sizes.items():
        if count == 1:
            lonely[domain].add(key)
    frozen = {domain: frozenset(keys) for domain, keys in lonely.items()}
    return SplitRecord.draw(collection.class_lists(), rule, dict(source), frozen)


def check_queries(collection: Collection, row_splits: Sequence[str], where: str) -> list[str]:
    """Every domain of a held-out split needs a class of two images or more, something to query: the domains that
    have none, each as one problem (:mod:`.problems`)."""
    sizes = Counter(zip(row_splits, collection.domains, collection.classes))
    queried = {(split, domain) for (split, domain, _), count in sizes.items() if count > 1}
    missing = sorted({(split, domain) for split, domain, _ in sizes if split != TRAIN_SPLIT} - queried)
    return [
        f"The domain {domain!r} of {where} has no {split} class with two images or more, so none of its images "
        "could be a query. Add images to its classes, or leave the domain out (the datasets key)"
        for split, domain in missing
    ]


def to_unified(collection: Collection, row_splits: Sequence[str]) -> datasets.DatasetDict:
    """The row-schema ``DatasetDict`` of ``collection`` with the split of each entry (see the module docstring)."""
    labels = _labels(collection, row_splits)
    entry_labels = [labels[(domain, key)] for domain, key in zip(collection.domains, collection.classes)]
    sizes = Counter(zip(row_splits, entry_labels))
    roles = [
        ROLE_TRAIN if split == TRAIN_SPLIT else (ROLE_GALLERY if sizes[(split, label)] == 1 else ROLE_BOTH)
        for split, label in zip(row_splits, entry_labels)
    ]
    image_rows = collection.rows or list(range(len(entry_labels)))
    columns = {LABEL_COLUMN: [0] * collection.images.num_rows, DATASET_COLUMN: [""] * collection.images.num_rows}
    columns[ROLE_COLUMN] = [""] * collection.images.num_rows  # rows of domains left out keep these, never selected
    columns[CLASS_NAME_COLUMN] = [""] * collection.images.num_rows
    for row, label, domain, role, key in zip(image_rows, entry_labels, collection.domains, roles, collection.classes):
        columns[LABEL_COLUMN][row], columns[DATASET_COLUMN][row], columns[ROLE_COLUMN][row] = label, domain, role
        columns[CLASS_NAME_COLUMN][row] = str(key)
    table = collection.images
    for name, values in columns.items():
        feature = datasets.Value("int64") if name == LABEL_COLUMN else datasets.Value("string")
        table = table.add_column(name, values, feature=feature)
    rows: dict[str, list[int]] = defaultdict(list)
    for entry in sorted(range(len(entry_labels)), key=lambda entry: (entry_labels[entry], entry)):
        rows[row_splits[entry]].append(image_rows[entry])
    return datasets.DatasetDict({split: _select(table, rows[split]) for split in SPLITS if rows[split]})


def _labels(collection: Collection, row_splits: Sequence[str]) -> dict[tuple[str, ClassKey], int]:
    """Label of every ``(domain, class)``: the training classes first, then validation, then test; a class a
    source's own splits share keeps the label it got first."""
    present: dict[str, set[tuple[str, ClassKey]]] = defaultdict(set)
    for split, domain, key in zip(row_splits, collection.domains, collection.classes):
        present[split].add((domain, key))
    labels: dict[tuple[str, ClassKey], int] = {}
    for split in SPLITS:
        for pair in sorted(present[split]):
            labels.setdefault(pair, len(labels))
    return labels


def _select(table: datasets.Dataset, rows: list[int]) -> datasets.Dataset:
    """The rows of one split. A table in memory (a folder's paths) is cut into a contiguous one, which reads faster; a
    table in a dataset's own files gets an index of rows (``select``), nothing copied and nothing written."""
    if table.cache_files:
        return table.select(rows)
    taken = table.data.table.take(pa.array(rows, type=pa.int64()))
    return datasets.Dataset(datasets.table.InMemoryTable(taken), info=table.info.copy())


def lonely_classes(collection: Collection, row_splits: Sequence[str]) -> list[str]:
    """The held-out (validation and test) classes with a single image, as ``domain/class (split)``: they are gallery
    rows only, never queries."""
    sizes = Counter(zip(row_splits, collection.domains, collection.classes))
    return [
        f"{domain}/{key} ({split})"
        for (split, domain, key), count in sorted(sizes.items(), key=str)
        if count == 1
        if split != TRAIN_SPLIT
    ]


def warn(message: str) -> None:
    """A warning on stderr, once per run (:func:`is_main_process`)."""
    if is_main_process():
        print(f"warning: {message}", file=sys.stderr)


def shown(items: Sequence[str]) -> str:
    """The first few of ``items`` and how many more, for a one-line message."""
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more
