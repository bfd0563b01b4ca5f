"""The class-disjoint split of a collection that has none, seeded and per domain, and its record (docs/collections.md,
"The split").

Metric learning is scored on classes the model never saw (docs/spec.md section 7), so a collection without splits of
its own is split by **class**, each domain on its own: its classes, in sorted order, are permuted by a generator seeded
by ``(split_seed, domain name)``; the first go to training, the next are held out as validation, the rest are test
classes (UML-mini's order: the validation classes are carved from the training side); classes with a single image
train first (the rest of them go to test), since held out they could never be queries. The fractions default to the
paper's protocol, half of every dataset's classes for test (docs/spec.md section 7), with a fifth of the training half
held out as validation, where recipes are chosen without reading the test split (docs/training.md). Seeding by the
domain's name rather than its position keeps a domain's split when another domain is added or left out.

Every domain keeps at least one training and one test class. The record (:class:`SplitRecord`) holds the class lists
per domain and split; a run writes it into its folder, and ``evaluate`` (and ``embed`` and ``search`` with
``--adapter``) reuse it, so they score exactly the classes the run held out.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DatasetLayoutError, InvalidConfigError
from ..owned_paths import write_file_atomically
from .schema import SPLITS, TEST_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT

ClassKey = str | int  # a class as its source names it: a folder name, a string label or an integer label
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.4, 0.1, 0.5)
"""Train, validation and test fractions of each domain's classes: the paper's half of the classes for test, and a fifth
of the training half held out as validation."""
FORMAT_VERSION = 1
RECORD_KEY = "peft_puma_split"


@dataclass(frozen=True)
class SplitRule:
    """How a collection without splits is split: the fractions of each domain's classes and the seed."""

    fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS
    seed: int = 0

    def __post_init__(self) -> None:
        check_fractions(self.fractions)

    def counts(self, num_classes: int) -> dict[str, int]:
        """Classes of each split for a domain of ``num_classes`` classes (rounded half up; at least one test class,
        and one training class where the training fraction is not 0)."""
        train_fraction, validation_fraction, test_fraction = self.fractions
        test = max(1, _rounded(num_classes * test_fraction))
        validation = _rounded(num_classes * validation_fraction)
        if train_fraction == 0:
            return {TRAIN_SPLIT: 0, VALIDATION_SPLIT: validation, TEST_SPLIT: num_classes - validation}
        while num_classes - test - validation < 1 and (validation > 0 or test > 1):
            if validation > 0:
                validation -= 1
            else:
                test -= 1
        return {TRAIN_SPLIT: num_classes - test - validation, VALIDATION_SPLIT: validation, TEST_SPLIT: test}

    def draw(
        self, domain: str, classes: Sequence[ClassKey], lonely: frozenset[ClassKey] = frozenset()
    ) -> dict[str, list[ClassKey]]:
        """The classes of ``domain`` by split: sorted, permuted by ``(seed, domain)``, cut by :meth:`counts`.

        The ``lonely`` classes (a single image) train first: held out, they could only be gallery rows, never queries,
        and a domain could be left with nothing to query. Those the training side cannot take go to the test side.
        """
        ordered = sorted(set(classes))
        generator = np.random.default_rng([self.seed, zlib.crc32(domain.encode("utf-8"))])
        permuted = [ordered[index] for index in generator.permutation(len(ordered))]
        counts = self.counts(len(ordered))
        alone = [key for key in permuted if key in lonely]
        drawn = (
            alone[: counts[TRAIN_SPLIT]] + [key for key in permuted if key not in lonely] + alone[counts[TRAIN_SPLIT] :]
        )
        cut = counts[TRAIN_SPLIT] + counts[VALIDATION_SPLIT]
        pieces = {
            TRAIN_SPLIT: drawn[: counts[TRAIN_SPLIT]],
            VALIDATION_SPLIT: drawn[counts[TRAIN_SPLIT] : cut],
            TEST_SPLIT: drawn[cut:],
        }
        return {split: sorted(members) for split, members in pieces.items()}


def check_fractions(fractions: Sequence[float]) -> None:
    """Three fractions (train, validation, test), each in [0, 1], summing to 1, with a test fraction above 0."""
    if len(fractions) != 3 or any(not 0 <= value <= 1 for value in fractions):
        raise InvalidConfigError(
            f"split_fractions must be three fractions in [0, 1] (train, validation, test); got {list(fractions)}."
        )
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6) or fractions[2] == 0:
        raise InvalidConfigError(
            f"split_fractions must sum to 1 with a test fraction above 0 (e.g. {list(DEFAULT_SPLIT_FRACTIONS)}); got "
            f"{list(fractions)}."
        )


def _rounded(value: float) -> int:
    return int(math.floor(value + 0.5))


@dataclass
class SplitRecord:
    """The classes of each domain, by split: what a run trained on and held out (``rule``: how they were drawn,
    ``None`` when the source brought its own splits)."""

    domains: dict[str, dict[str, list[ClassKey]]]
    rule: SplitRule | None = None
    source: dict[str, Any] = field(default_factory=dict)
    _index: dict[tuple[str, ClassKey], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {
            (domain, key): split
            for domain, splits in self.domains.items()
            for split, members in splits.items()
            for key in members
        }

    @classmethod
    def draw(
        cls,
        classes: Mapping[str, Sequence[ClassKey]],
        rule: SplitRule,
        source: dict[str, Any],
        lonely: Mapping[str, frozenset[ClassKey]] | None = None,
    ) -> SplitRecord:
        """The split of every domain of ``classes`` (``{domain: its classes}``) by ``rule``; ``lonely``: each
        domain's classes of a single image (:meth:`SplitRule.draw`)."""
        lonely = lonely or {}
        domains = {
            domain: rule.draw(domain, members, lonely.get(domain, frozenset())) for domain, members in classes.items()
        }
        return cls(domains, rule, source)

    def split_of(self, domain: str, key: ClassKey) -> str | None:
        """The split the record gives class ``key`` of ``domain``, ``None`` for a class it does not know."""
        return self._index.get((domain, key))

    def to_dict(self) -> dict[str, Any]:
        rule = {"split_seed": self.rule.seed, "split_fractions": list(self.rule.fractions)} if self.rule else None
        return {RECORD_KEY: FORMAT_VERSION, "rule": rule, "source": self.source, "domains": self.domains}

    @classmethod
    def from_dict(cls, values: Any, where: str) -> SplitRecord:
        if not isinstance(values, dict) or values.get(RECORD_KEY) != FORMAT_VERSION:
            raise DatasetLayoutError(
                f"{where} is not a split record of format {FORMAT_VERSION} (it has no {RECORD_KEY!r}: "
                f"{FORMAT_VERSION}); it was not written by this peft_puma. Train the run again."
            )
        rule = values.get("rule")
        domains = {
            domain: {split: list(splits.get(split, [])) for split in SPLITS}
            for domain, splits in values["domains"].items()
        }
        return cls(
            domains,
            SplitRule(tuple(rule["split_fractions"]), int(rule["split_seed"])) if rule else None,
            values.get("source", {}),
        )

    def write(self, path: str) -> None:
        """Write the record as JSON at ``path`` (class names as the source spells them), whole or not at all."""

        def write(partial: str) -> None:
            with open(partial, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, indent=1, ensure_ascii=False)
                handle.write("\n")

        write_file_atomically(path, write)

    @classmethod
    def read(cls, path: str) -> SplitRecord:
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except (OSError, ValueError) as error:
            raise DatasetLayoutError(f"Cannot read the split record {path!r}: {error}.") from None
        return cls.from_dict(values, path)
