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

The bookkeeping is done in arrays, not per row in Python: every entry's class becomes one integer (:class:`Pairs`,
found once per collection), and the split, the labels, the roles and the checks are array operations on those, so a
collection of a million rows splits in about a second and a few tens of megabytes.

The images are never copied: a folder tree's rows hold file paths, a loaded dataset's rows its own image column
(``select`` of row indices), and both decode lazily, in the DataLoader's workers.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import datasets
import numpy as np
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
    _pairs: Pairs | None = field(default=None, init=False, repr=False, compare=False)

    def pairs(self) -> Pairs:
        """Every entry's ``(domain, class)`` as an integer (found once, then kept)."""
        if self._pairs is None:
            self._pairs = Pairs.of(self.domains, self.classes)
        return self._pairs

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
        """``{domain: its classes, sorted}``, domains in name order (a new dict each call; the lists are shared)."""
        return dict(self.pairs().by_domain)


@dataclass(frozen=True)
class Pairs:
    """The distinct ``(domain, class)`` pairs of a collection, sorted (``keys``), and the pair of every entry as an
    index into them (``ids``): the integer the split's bookkeeping works on."""

    ids: np.ndarray
    keys: list[tuple[str, ClassKey]]
    by_domain: dict[str, list[ClassKey]] = field(compare=False)  # each domain's classes, sorted: class_lists

    @classmethod
    def of(cls, domains: Sequence[str], classes: Sequence[ClassKey]) -> Pairs:
        domain_codes, domain_names = _factorized(domains)
        class_codes, class_names = _factorized(classes)
        width = max(1, len(class_names))
        found, ids = np.unique(domain_codes * width + class_codes, return_inverse=True)
        unsorted = [(domain_names[code // width], class_names[code % width]) for code in found.tolist()]
        keys = sorted(unsorted)
        rank = {key: index for index, key in enumerate(keys)}
        to_sorted = np.array([rank[key] for key in unsorted], dtype=np.int64)  # found's order -> sorted order
        by_domain: dict[str, list[ClassKey]] = defaultdict(list)
        for domain, key in keys:
            by_domain[domain].append(key)
        return cls(to_sorted[ids.reshape(-1)], keys, dict(by_domain))

    def sizes(self) -> np.ndarray:
        """Entries of each pair."""
        return np.bincount(self.ids, minlength=len(self.keys))


def _factorized(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """``(codes, distinct values)`` of ``values``, hashed in Arrow (a list of one type), else in Python."""
    try:
        encoded = pa.array(values).dictionary_encode()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed or unusual types: slower, same result
        seen: dict[Any, int] = {}
        codes = np.fromiter((seen.setdefault(value, len(seen)) for value in values), np.int64, len(values))
        return codes, list(seen)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


_SPLIT_POSITION = {name: index for index, name in enumerate(SPLITS)}


def split_codes(row_splits: Sequence[str] | np.ndarray) -> np.ndarray:
    """Each row's split as its position in ``SPLITS`` (0 train, 1 validation, 2 test)."""
    if isinstance(row_splits, np.ndarray) and row_splits.dtype.kind in "iu":
        return row_splits
    return np.fromiter((_SPLIT_POSITION[name] for name in row_splits), np.int64, len(row_splits))


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


def split_by_record(collection: Collection, record: SplitRecord) -> np.ndarray:
    """Each row's split (its position in ``SPLITS``): the one the record gives its class, and the test split for a
    class the record does not know (a new collection, or classes added since the run: none of them was trained on).
    One lookup per class, not per row."""
    pairs = collection.pairs()
    of_pair = np.array(
        [_SPLIT_POSITION[record.split_of(domain, key) or TEST_SPLIT] for domain, key in pairs.keys], dtype=np.int64
    )
    return of_pair[pairs.ids]


def draw_split(collection: Collection, rule: SplitRule, source: dict) -> SplitRecord:
    """The seeded class split of a collection without splits (:mod:`.splits`; its one-image classes train first)."""
    pairs = collection.pairs()
    lonely: dict[str, set[ClassKey]] = defaultdict(set)
    for index in np.flatnonzero(pairs.sizes() == 1).tolist():
        domain, key = pairs.keys[index]
        lonely[domain].add(key)
    frozen = {domain: frozenset(keys) for domain, keys in lonely.items()}
    return SplitRecord.draw(collection.class_lists(), rule, dict(source), frozen)


def _split_pairs(
    collection: Collection, row_splits: Sequence[str] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(split, pair)`` combinations the rows hold, as ``split * len(keys) + pair``: ``(present, entries of
    each, each row's combination as an index into present)``."""
    pairs = collection.pairs()
    combined = split_codes(row_splits) * len(pairs.keys) + pairs.ids
    present, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    return present, counts, inverse.reshape(-1)


def check_queries(collection: Collection, row_splits: Sequence[str] | np.ndarray, where: str) -> list[str]:
    """Every domain of a held-out split needs a class of two images or more, something to query: the domains that
    have none, each as one problem (:mod:`.problems`)."""
    pairs = collection.pairs()
    present, counts, _ = _split_pairs(collection, row_splits)
    held_out, queried = set(), set()
    for combined, count in zip(present.tolist(), counts.tolist()):
        split, pair = divmod(combined, len(pairs.keys))
        if SPLITS[split] == TRAIN_SPLIT:
            continue
        place = (SPLITS[split], pairs.keys[pair][0])
        held_out.add(place)
        if count > 1:
            queried.add(place)
    return [
        f"The domain {domain!r} of {where} has no {split} class with two images or more, so none of its images "
        "could be a query. Add images to its classes, or leave the domain out (the datasets key)"
        for split, domain in sorted(held_out - queried)
    ]


def to_unified(collection: Collection, row_splits: Sequence[str] | np.ndarray) -> datasets.DatasetDict:
    """The row-schema ``DatasetDict`` of ``collection`` with the split of each entry (see the module docstring)."""
    pairs = collection.pairs()
    splits = split_codes(row_splits)
    entry_labels = _labels(collection, splits)[pairs.ids]
    _, counts, combination = _split_pairs(collection, splits)
    alone = counts[combination] == 1  # the only image of its class in its split (a label is one pair)
    role_codes = np.where(splits == _SPLIT_POSITION[TRAIN_SPLIT], 0, np.where(alone, 1, 2))
    num_rows = collection.images.num_rows
    rows_given = collection.rows is not None
    image_rows = np.asarray(collection.rows if rows_given else range(len(entry_labels)), dtype=np.int64)

    def spread(values: np.ndarray, fill: int) -> np.ndarray:  # entries' values at their rows; rows left out: fill
        column = np.full(num_rows, fill, dtype=np.int64)
        column[image_rows] = values
        return column

    domain_names = sorted({domain for domain, _ in pairs.keys})
    code_of = {name: code for code, name in enumerate(domain_names)}
    pair_domain = np.array([code_of[domain] for domain, _ in pairs.keys] or [0], dtype=np.int64)
    columns = {
        LABEL_COLUMN: pa.array(spread(entry_labels, 0), type=pa.int64()),
        # rows of domains left out keep "", never selected
        DATASET_COLUMN: _strings(spread(pair_domain[pairs.ids], -1), domain_names),
        ROLE_COLUMN: _strings(spread(role_codes, -1), [ROLE_TRAIN, ROLE_GALLERY, ROLE_BOTH]),
        CLASS_NAME_COLUMN: _strings(spread(pairs.ids, -1), [str(key) for _, key in pairs.keys]),
    }
    features = {name: datasets.Value("int64" if name == LABEL_COLUMN else "string") for name in columns}
    added = datasets.Dataset(
        datasets.table.InMemoryTable(pa.table(columns)),
        info=datasets.DatasetInfo(features=datasets.Features(features)),
    )
    table = datasets.concatenate_datasets([collection.images, added], axis=1)  # one horizontal join, not four
    order = np.lexsort((np.arange(len(entry_labels)), entry_labels))  # by label, then source order
    ordered_rows, ordered_splits = image_rows[order], splits[order]
    result = {}
    for index, split in enumerate(SPLITS):
        rows = ordered_rows[ordered_splits == index]
        if len(rows):
            result[split] = _select(table, rows)
    return datasets.DatasetDict(result)


def _strings(codes: np.ndarray, names: list[str]) -> pa.Array:
    """A string column from codes into ``names`` (-1: the empty string), built by Arrow, not per row in Python."""
    dictionary = pa.array([*names, ""], type=pa.string())
    indices = np.where(codes < 0, len(names), codes).astype(np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(indices), dictionary).cast(pa.string())


def _labels(collection: Collection, splits: np.ndarray) -> np.ndarray:
    """Label of every pair (``Pairs.keys`` order): the training classes first, then validation, then test, each in
    sorted order; a class a source's own splits share keeps the label of its first split."""
    pairs = collection.pairs()
    first = np.full(len(pairs.keys), len(SPLITS), dtype=np.int64)
    np.minimum.at(first, pairs.ids, splits)
    order = np.lexsort((np.arange(len(pairs.keys)), first))  # by first split, then by sorted (domain, class)
    labels = np.empty(len(pairs.keys), dtype=np.int64)
    labels[order] = np.arange(len(pairs.keys))
    return labels


def _select(table: datasets.Dataset, rows: np.ndarray) -> datasets.Dataset:
    """The rows of one split. A table in memory (a folder's paths) is cut into a contiguous one, which reads faster; a
    table in a dataset's own files gets an index of rows (``select``), nothing copied and nothing written."""
    if table.cache_files:
        return table.select(rows)
    taken = table.data.table.take(pa.array(rows, type=pa.int64()))
    return datasets.Dataset(datasets.table.InMemoryTable(taken), info=table.info.copy())


def lonely_classes(collection: Collection, row_splits: Sequence[str] | np.ndarray) -> list[str]:
    """The held-out (validation and test) classes with a single image, as ``domain/class (split)``: they are gallery
    rows only, never queries."""
    pairs = collection.pairs()
    present, counts, _ = _split_pairs(collection, row_splits)
    found = []
    for combined in present[counts == 1].tolist():
        split, pair = divmod(combined, len(pairs.keys))
        if SPLITS[split] != TRAIN_SPLIT:
            domain, key = pairs.keys[pair]
            found.append((SPLITS[split], domain, key))
    return [f"{domain}/{key} ({split})" for split, domain, key in sorted(found, key=str)]


def warn(message: str) -> None:
    """A warning on stderr, once per run (:func:`is_main_process`)."""
    if is_main_process():
        print(f"warning: {message}", file=sys.stderr)


def shown(items: Sequence[str]) -> str:
    """The first few of ``items`` and how many more, for a one-line message."""
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more
