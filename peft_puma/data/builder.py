"""Union of any subset of the paper datasets into one ``datasets.Dataset`` per split (docs/data.md).

Labels are made globally unique here (the published code lets test labels of different datasets collide; we do not
reproduce that): training classes of all datasets are numbered ``0 .. T-1`` in registry order
(CUB, Cars, SOP, In-shop, NABirds, Dogs, Flowers, Aircraft, then any custom spec), so a training label indexes the loss
proxies directly; test classes continue at ``T``. See :mod:`peft_puma.data.schema` for the row schema.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from ..errors import InvalidConfigError
from .images import DEFAULT_IMAGE_CHECK, IMAGE_CHECKS, BadImage, CheckMode
from .schema import (
    DATASET_COLUMN,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    ROLE_COLUMN,
    TEST_SPLIT,
    TRAIN_SPLIT,
    row_features,
)
from .specs import DATASET_SPECS
from .specs.base import DatasetSpec, ParsedDataset, ParsedSplit, ParseOptions

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_HUB = "hub"  # roots={"cub": "hub"} reads the spec's documented Hub copy


@dataclass(frozen=True)
class DatasetSummary:
    """What one dataset contributed to a union."""

    name: str
    source: str
    train_images: int
    train_classes: int
    test_images: int
    test_classes: int
    skipped: tuple[BadImage, ...] = ()


@dataclass
class BuildReport:
    """Per-dataset counts of a build, and every image left out because the user asked to skip bad ones."""

    datasets: list[DatasetSummary] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return sum(len(summary.skipped) for summary in self.datasets)

    @property
    def skipped(self) -> list[BadImage]:
        return [bad for summary in self.datasets for bad in summary.skipped]

    def __str__(self) -> str:
        lines = [
            f"{s.name}: {s.train_images} train images / {s.train_classes} classes, {s.test_images} test images / "
            f"{s.test_classes} classes, {len(s.skipped)} skipped (from {s.source})"
            for s in self.datasets
        ]
        return "\n".join(lines + [f"total skipped images: {self.num_skipped}"])


def _is_local(source: str | os.PathLike[str]) -> bool:
    return not isinstance(source, str) or Path(source).expanduser().exists() or not _HUB_ID.match(source)


def load_parsed(
    spec: DatasetSpec, source: str | os.PathLike[str], options: ParseOptions | None = None
) -> ParsedDataset:
    """Read one dataset from a local folder (original layout) or, for a Hub id (or ``"hub"``), from the HF Hub."""
    options = options or ParseOptions()
    if isinstance(source, str) and source == DEFAULT_HUB and not Path(source).exists():
        if spec.hub_id is None:
            raise spec.error("has no usable Hub copy (see docs/data.md); pass the folder of the original download")
        source = spec.hub_id
    if _is_local(source):
        return spec.parse(source, options)
    from .hub import parse_hub  # deferred: only Hub users pay for it

    return parse_hub(spec, str(source), options)


def _split_dataset(parsed: ParsedDataset, part: ParsedSplit, offset: int) -> datasets.Dataset:
    labels = [offset + label for label in part.labels]
    if isinstance(part.images, datasets.Dataset):
        table = part.images.select_columns([IMAGE_COLUMN]).cast_column(IMAGE_COLUMN, datasets.Image())
        table = table.add_column(LABEL_COLUMN, labels, feature=datasets.Value("int64"))
        table = table.add_column(DATASET_COLUMN, [parsed.name] * len(labels), feature=datasets.Value("string"))
        return table.add_column(ROLE_COLUMN, list(part.roles), feature=datasets.Value("string"))
    columns = {
        IMAGE_COLUMN: list(part.images),
        LABEL_COLUMN: labels,
        DATASET_COLUMN: [parsed.name] * len(labels),
        ROLE_COLUMN: list(part.roles),
    }
    return datasets.Dataset.from_dict(columns, features=row_features())


def union_parsed(parsed: Sequence[ParsedDataset]) -> datasets.DatasetDict:
    """Concatenate parsed datasets (in the given order) into ``{"train", "test"}`` with globally unique labels.

    Training labels: dataset ``k`` takes ``[T_<k, T_<k + C_k)`` where ``T_<k`` sums the training classes of the datasets
    before it. Test labels start after all training labels (``T``) and are offset the same way. Exposed so that other
    benchmarks (UML-mini) produce exactly the same schema.
    """
    if not parsed:
        raise InvalidConfigError("nothing to union: give at least one dataset")
    names = [p.name for p in parsed]
    if len(set(names)) != len(names):
        raise InvalidConfigError(f"each dataset can appear once in a union, got {names}")
    splits: dict[str, list[datasets.Dataset]] = {TRAIN_SPLIT: [], TEST_SPLIT: []}
    offset = 0
    for side in (TRAIN_SPLIT, TEST_SPLIT):
        for item in parsed:
            part = item.train if side == TRAIN_SPLIT else item.test
            splits[side].append(_split_dataset(item, part, offset))
            offset += part.num_classes
    return datasets.DatasetDict({side: datasets.concatenate_datasets(parts) for side, parts in splits.items()})


def build_unified_dataset_with_report(
    roots: Mapping[str, str | os.PathLike[str]],
    *,
    check_images: CheckMode = DEFAULT_IMAGE_CHECK,
    skip_bad_images: bool = False,
    allow_singletons: bool = False,
    num_threads: int | None = None,
    specs: Mapping[str, DatasetSpec] | None = None,
) -> tuple[datasets.DatasetDict, BuildReport]:
    """:func:`build_unified_dataset`, also returning the per-dataset counts and the list of skipped images."""
    registry = DATASET_SPECS if specs is None else specs
    unknown = sorted(set(roots) - set(registry))
    if unknown:
        raise InvalidConfigError(f"unknown dataset name(s) {unknown}; known: {list(registry)}")
    if not roots:
        raise InvalidConfigError(f"roots is empty; give at least one of {list(registry)}")
    if check_images not in IMAGE_CHECKS:
        raise InvalidConfigError(f"check_images must be one of {IMAGE_CHECKS}, got {check_images!r}")
    options = ParseOptions(check_images, skip_bad_images, allow_singletons, num_threads)
    parsed = [load_parsed(registry[name], roots[name], options) for name in registry if name in roots]
    report = BuildReport(
        [
            DatasetSummary(
                p.name, p.source, len(p.train), p.train.num_classes, len(p.test), p.test.num_classes, tuple(p.skipped)
            )
            for p in parsed
        ]
    )
    if report.num_skipped:
        logger.warning("skipped %d unusable image(s) in total:\n%s", report.num_skipped, report)
    return union_parsed(parsed), report


def build_unified_dataset(
    roots: Mapping[str, str | os.PathLike[str]],
    *,
    check_images: CheckMode = DEFAULT_IMAGE_CHECK,
    skip_bad_images: bool = False,
    allow_singletons: bool = False,
    num_threads: int | None = None,
    specs: Mapping[str, DatasetSpec] | None = None,
) -> datasets.DatasetDict:
    """Build the unified benchmark (docs/data.md) from any subset of its datasets.

    ``roots`` maps a dataset name of :data:`DATASET_SPECS` to the folder of its original download, to a Hub dataset id
    (``"owner/name"``), or to ``"hub"`` for the documented Hub copy. Returns ``{"train", "test"}`` with the columns of
    :mod:`peft_puma.data.schema`.

    - ``check_images``: ``"full"`` decodes every image once (catches truncated files), ``"header"`` only identifies
      the format, ``"exists"`` only checks that the file is there. Hub copies are not checked.
    - ``skip_bad_images``: leave unusable images out instead of raising; the count is logged (and returned by
      :func:`build_unified_dataset_with_report`).
    - ``allow_singletons``: keep test classes whose queries have no correct gallery image instead of raising.
    - ``specs``: a registry to use instead of :data:`DATASET_SPECS` (its order sets the label blocks).
    """
    unified, _ = build_unified_dataset_with_report(
        roots,
        check_images=check_images,
        skip_bad_images=skip_bad_images,
        allow_singletons=allow_singletons,
        num_threads=num_threads,
        specs=specs,
    )
    return unified
