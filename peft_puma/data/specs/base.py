"""What every dataset spec shares: locating the root, reading list files, and the split rules of docs/data.md.

A spec reads a dataset's ORIGINAL released layout into :class:`Entry` rows (image path, original class id, the list
line it came from, and the official partition where the dataset has one). Everything after that is common and lives
here: checking the images, the class-count table, empty and single-image classes, and turning classes into contiguous
per-dataset labels with a role per row. Two split rules exist:

- class split (CUB, Cars, NABirds, Dogs, Flowers, Aircraft): the dataset's classes in the spec's order, the first
  ``num_train_classes`` train, the next ``num_test_classes`` test, all images of a class on its side; test rows are
  leave-one-out rows (role ``"both"``);
- official partition (SOP, In-shop): each row carries its list's partition (``train``/``test``, or In-shop's
  ``train``/``query``/``gallery``).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...errors import DatasetLayoutError
from ..images import DEFAULT_IMAGE_CHECK, BadImage, CheckMode, find_bad_images
from ..schema import ROLE_BOTH, ROLE_GALLERY, ROLE_QUERY, ROLE_TRAIN

logger = logging.getLogger(__name__)

PARTITION_TRAIN = "train"
PARTITION_TEST = "test"


@dataclass(frozen=True)
class Entry:
    """One image as a dataset's own files list it."""

    path: str  # absolute path of the image file
    class_key: Hashable  # the dataset's own class id (int id, folder name, variant name, item id)
    source: str  # where it was listed, for messages: "images.txt line 12"
    partition: str | None = None  # official partition (SOP, In-shop); None for class-split datasets


@dataclass
class ParsedSplit:
    """One side (train or test) of one dataset, with labels local to the dataset and its side (0 .. C-1)."""

    images: Any  # a list of paths / PIL images / {"path", "bytes"} dicts, or a datasets.Dataset with an "image" column
    labels: list[int]
    roles: list[str]
    class_names: list[str]  # class_names[label]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ParsedDataset:
    """A dataset read and split, before it joins the union."""

    name: str
    train: ParsedSplit
    test: ParsedSplit
    source: str  # the folder or Hub id it was read from
    skipped: list[BadImage] = field(default_factory=list)


@dataclass(frozen=True)
class ParseOptions:
    """How strictly to read a folder (see :func:`peft_puma.data.build_unified_dataset`)."""

    check_images: CheckMode = DEFAULT_IMAGE_CHECK
    skip_bad_images: bool = False
    allow_singletons: bool = False
    num_threads: int | None = None


class DatasetSpec(ABC):
    """Base of the eight paper dataset specs: subclasses set the class attributes and implement :meth:`read_entries`."""

    name: ClassVar[str]  # short name, the value of the ``dataset`` column
    title: ClassVar[str]
    num_train_classes: ClassVar[int]
    num_test_classes: ClassVar[int]
    split_rule: ClassVar[str]  # in words, as in the table of docs/data.md
    marker: ClassVar[str]  # a file (relative to the dataset root) that only the right folder contains
    root_candidates: ClassVar[tuple[str, ...]] = ("",)  # sub-folders users commonly point above the root
    layout: ClassVar[str]  # the expected layout in words, for messages
    homepage: ClassVar[str] = ""
    # Hub support: the maintained copy, and how its integer labels map to the original class order ("index": label i
    # is the original class i+1; "name": classes sorted by their ClassLabel name). None: no usable Hub copy.
    hub_id: ClassVar[str | None] = None
    hub_class_order: ClassVar[str | None] = None

    # --- reading the original layout (subclasses) -------------------------------------------------------------------

    @abstractmethod
    def read_entries(self, root: Path) -> list[Entry]:
        """Every image the dataset's own files list, in file order."""

    def declared_classes(self, root: Path) -> dict[Hashable, str]:
        """Classes the dataset declares (class key -> name), images or not; {} when only the images define them."""
        return {}

    def order_classes(self, keys: set[Hashable]) -> list[Hashable]:
        """Class-split datasets: the order whose first ``num_train_classes`` are training classes (default: sorted)."""
        return sorted(keys)

    # --- shared machinery ------------------------------------------------------------------------------------------

    @property
    def uses_official_partition(self) -> bool:
        return False

    def error(self, message: str) -> DatasetLayoutError:
        return DatasetLayoutError(f"{self.name} ({self.title}): {message}")

    def locate(self, root: str | os.PathLike[str]) -> Path:
        """The dataset root under ``root``: ``root`` itself or a known sub-folder that holds :attr:`marker`."""
        base = Path(root).expanduser()
        if not base.is_dir():
            raise self.error(f"folder {base} does not exist (or is not a folder). Expected layout: {self.layout}")
        for candidate in self.root_candidates:
            if (base / candidate / self.marker).exists():
                return (base / candidate).resolve()
        looked = ", ".join(str(base / c / self.marker) for c in self.root_candidates)
        hint = ""
        if (base.parent / self.marker).exists():
            hint = f" {base.parent / self.marker} exists: point roots[{self.name!r}] at {base.parent} instead."
        raise self.error(
            f"wrong folder layout: missing {self.marker} (looked for {looked}).{hint} "
            f"Expected the original layout: {self.layout}. Point roots[{self.name!r}] at the folder that contains it."
        )

    def require(self, path: Path, what: str = "file") -> Path:
        if not path.exists():
            raise self.error(
                f"missing {what} {path}. Expected the original layout: {self.layout}. "
                "Re-extract the dataset archive (the download may be incomplete)."
            )
        return path

    def read_table(self, path: Path, columns: int, form: str, *, skip: int = 0) -> list[tuple[int, list[str]]]:
        """Non-empty lines of a whitespace-separated list file as ``(line number, fields)``.

        The last field takes the rest of the line, so names with spaces (NABirds, Aircraft) stay whole.
        """
        self.require(path)
        rows = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if number <= skip or not line.strip():
                    continue
                fields = line.split(maxsplit=columns - 1)
                if len(fields) != columns:
                    raise self.error(
                        f"malformed line {number} of {path}: expected {form!r}, got {line.strip()!r}. "
                        "The file is damaged or not the original one; re-download it."
                    )
                rows.append((number, [f.strip() for f in fields]))
        if not rows:
            raise self.error(f"{path} lists nothing (empty file). Re-download it.")
        return rows

    def parse_int(self, text: str, path: Path, number: int) -> int:
        try:
            return int(text)
        except ValueError:
            raise self.error(f"line {number} of {path}: expected an integer id, got {text!r}") from None

    def parse(self, root: str | os.PathLike[str], options: ParseOptions | None = None) -> ParsedDataset:
        """Read, check and split the dataset at ``root`` (its original layout)."""
        options = options or ParseOptions()
        base = self.locate(root)
        entries = self.read_entries(base)
        bad = find_bad_images([e.path for e in entries], options.check_images, options.num_threads)
        if bad and not options.skip_bad_images:
            raise self.error(_bad_images_message(bad, entries))
        if bad:
            logger.warning("%s: skipped %d unusable image(s): %s", self.name, len(bad), "; ".join(map(str, bad[:10])))
            skip = {b.path for b in bad}
            entries = [e for e in entries if e.path not in skip]
        self.check_no_empty_class(base, entries)
        train, test = self.split_rows([e.class_key for e in entries], [e.partition for e in entries], options)
        names = self.declared_classes(base)
        return ParsedDataset(
            name=self.name,
            train=self._materialise(train, entries, names),
            test=self._materialise(test, entries, names),
            source=str(base),
            skipped=bad,
        )

    def check_no_empty_class(self, base: Path, entries: Sequence[Entry]) -> None:
        declared = self.declared_classes(base)
        present = {e.class_key for e in entries}
        empty = [key for key in declared if key not in present]
        if empty:
            shown = ", ".join(f"{key} ({declared[key]})" for key in empty[:5])
            raise self.error(
                f"{len(empty)} declared class(es) have no usable image: {shown}{' ...' if len(empty) > 5 else ''}. "
                f"Their images are missing from {base} (or were skipped as unreadable); re-extract the dataset."
            )

    def split_rows(
        self, keys: Sequence[Hashable], partitions: Sequence[str | None], options: ParseOptions
    ) -> tuple[_SplitPlan, _SplitPlan]:
        """Assign rows to train/test with local labels and roles, checking the class-count table."""
        if self.uses_official_partition:
            train, test = self._partition_plans(keys, partitions)
        else:
            train, test = self._class_split_plans(keys)
        self._check_sizes(train, test, options)
        return train, test

    def _class_split_plans(self, keys: Sequence[Hashable]) -> tuple[_SplitPlan, _SplitPlan]:
        ordered = self.order_classes(set(keys))
        expected = self.num_train_classes + self.num_test_classes
        if len(ordered) != expected:
            raise self.error(
                f"found {len(ordered)} classes with images, but the unified benchmark (docs/data.md) splits it into "
                f"{self.num_train_classes} train + {self.num_test_classes} test = {expected} classes "
                f"({self.split_rule}). Check that the whole dataset is extracted."
            )
        train_classes = ordered[: self.num_train_classes]
        return (
            _SplitPlan.of(keys, train_classes, lambda i: ROLE_TRAIN),
            _SplitPlan.of(keys, ordered[self.num_train_classes :], lambda i: ROLE_BOTH),
        )

    def _partition_plans(
        self, keys: Sequence[Hashable], partitions: Sequence[str | None]
    ) -> tuple[_SplitPlan, _SplitPlan]:
        roles = {PARTITION_TRAIN: ROLE_TRAIN, PARTITION_TEST: ROLE_BOTH, ROLE_QUERY: ROLE_QUERY}
        roles[ROLE_GALLERY] = ROLE_GALLERY
        train_keys = {k for k, p in zip(keys, partitions) if p == PARTITION_TRAIN}
        test_keys = {k for k, p in zip(keys, partitions) if p != PARTITION_TRAIN}
        shared = train_keys & test_keys
        if shared:
            raise self.error(
                f"{len(shared)} class(es) appear in both the training and the test lists (e.g. {sorted(shared)[:3]}); "
                "the official lists are class-disjoint, so the list files are not the original ones."
            )
        for side, found, expected in (
            ("train", len(train_keys), self.num_train_classes),
            ("test", len(test_keys), self.num_test_classes),
        ):
            if found != expected:
                raise self.error(
                    f"the official lists give {found} {side} classes, the unified benchmark (docs/data.md) expects "
                    f"{expected} ({self.split_rule}). The list files are incomplete or not the original ones; "
                    "re-download them."
                )
        return (
            _SplitPlan.of(keys, sorted(train_keys), lambda i: roles[partitions[i]]),
            _SplitPlan.of(keys, sorted(test_keys), lambda i: roles[partitions[i]]),
        )

    def _check_sizes(self, train: _SplitPlan, test: _SplitPlan, options: ParseOptions) -> None:
        counts = train.class_sizes()
        single = [train.classes[label] for label, count in enumerate(counts) if count == 1]
        if single:
            # Proxy losses train on single-image classes; pair losses cannot use them. Worth a note, not an error.
            logger.warning("%s: %d training class(es) have a single image, e.g. %s", self.name, len(single), single[:5])
        problems = test.retrieval_problems()
        if problems and not options.allow_singletons:
            first = problems[0]
            raise self.error(
                f"{len(problems)} test class(es) cannot be retrieved, e.g. class {first[0]!r} ({first[1]}): as a "
                "query it has no correct answer in the gallery, which makes its Recall@k zero by construction. Add the "
                "missing images (re-extract the dataset), or pass allow_singletons=True to keep such classes."
            )

    def _materialise(self, plan: _SplitPlan, entries: Sequence[Entry], names: dict[Hashable, str]) -> ParsedSplit:
        return ParsedSplit(
            images=[entries[i].path for i in plan.rows],
            labels=plan.labels,
            roles=plan.roles,
            class_names=[str(names.get(key, key)) for key in plan.classes],
        )


@dataclass
class _SplitPlan:
    """Which rows form one side, with their local labels (index into ``classes``) and roles."""

    rows: list[int]
    labels: list[int]
    roles: list[str]
    classes: list[Hashable]

    @classmethod
    def of(cls, keys: Sequence[Hashable], classes: Sequence[Hashable], role_of: Any) -> _SplitPlan:
        label_of = {key: label for label, key in enumerate(classes)}
        rows = [i for i, key in enumerate(keys) if key in label_of]
        return cls(rows, [label_of[keys[i]] for i in rows], [role_of(i) for i in rows], list(classes))

    def class_sizes(self) -> list[int]:
        counts = [0] * len(self.classes)
        for label in self.labels:
            counts[label] += 1
        return counts

    def retrieval_problems(self) -> list[tuple[Hashable, str]]:
        """Test classes whose queries cannot find a correct gallery item (leave-one-out excludes the query itself)."""
        loo, queries, gallery = [0] * len(self.classes), [0] * len(self.classes), [0] * len(self.classes)
        for label, role in zip(self.labels, self.roles):
            loo[label] += role == ROLE_BOTH
            queries[label] += role == ROLE_QUERY
            gallery[label] += role in (ROLE_BOTH, ROLE_GALLERY)
        problems = []
        for label, key in enumerate(self.classes):
            if loo[label] and gallery[label] < 2:
                problems.append((key, "a single image"))
            elif queries[label] and gallery[label] < 1:
                problems.append((key, f"{queries[label]} query image(s) but no gallery image"))
        return problems


def _bad_images_message(bad: Sequence[BadImage], entries: Sequence[Entry]) -> str:
    listed = {e.path: e.source for e in entries}
    shown = "; ".join(f"{b.path} (listed in {listed.get(b.path, '?')}): {b.reason}" for b in bad[:5])
    more = f" ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    return (
        f"{len(bad)} unusable image(s): {shown}{more}. Re-extract or re-download those files, or pass "
        "skip_bad_images=True to leave them out (the build then reports how many were skipped)."
    )


__all__ = [
    "DatasetSpec",
    "Entry",
    "ParseOptions",
    "ParsedDataset",
    "ParsedSplit",
    "PARTITION_TEST",
    "PARTITION_TRAIN",
]
