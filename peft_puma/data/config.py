"""The data keys of a config: where the unified benchmark comes from (exactly one source) and which of its datasets
to use. Training's config extends them (:class:`peft_puma.training.TrainingConfig`), and ``python -m
peft_puma.evaluate`` reads them alone (docs/training.md, "Config keys")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config.keys import CONTROL, check_choice, check_types, choice_metavar, key, key_default
from ..errors import InvalidConfigError
from .images import DEFAULT_IMAGE_CHECK, IMAGE_CHECKS, ON_ERROR_CHOICES
from .schema import IMAGE_COLUMN, LABEL_COLUMN
from .specs import DATASET_SPECS
from .splits import DEFAULT_SPLIT_FRACTIONS, check_fractions
from .transforms import MIN_IMAGE_SIZE

DATA_SOURCES: tuple[str, ...] = ("dataset_path", "dataset_roots", "uml_mini_dir")
# The keys that say how to read and split a dataset_path; meaningless with another source.
_PATH_KEYS: tuple[str, ...] = (
    "dataset_config",
    "dataset_revision",
    "image_column",
    "label_column",
    "domain_column",
    "split_fractions",
    "split_seed",
)


@dataclass
class DataConfig:
    """Where the unified benchmark comes from (exactly one source) and which of its datasets to use.

    The paths are :data:`~peft_puma.config.keys.CONTROL` keys: a run moved to another machine, whose data lies
    elsewhere, is the same run; the images and classes it trains on are compared instead (docs/training.md). The
    columns of a ``dataset_path`` and the class split of a collection without one are recipe keys: they change what
    is learnt (docs/collections.md).
    """

    _argument_group_name = "data keys"  # the --help section of HfArgumentParser (not a field)

    dataset_path: str | None = key(
        None,
        role=CONTROL,
        metavar="PATH",
        help="A folder of images (<class>/<image>, or <domain>/<class>/<image> for several domains), a DatasetDict "
        "written by `save_to_disk`, data files or a Hub dataset id `datasets.load_dataset` opens "
        "(docs/collections.md).",
    )
    dataset_roots: dict[str, str] | None = key(
        None,
        role=CONTROL,
        metavar="MAPPING",
        help="Build the paper benchmark from {name: folder, Hub id or 'hub'} with "
        "peft_puma.data.build_unified_dataset (names: cub, cars, sop, inshop, nabirds, dogs, flowers, aircraft).",
    )
    uml_mini_dir: str | None = key(
        None, role=CONTROL, metavar="DIR", help="UML-mini, loaded from this folder (built there first when missing)."
    )
    datasets: list[str] | None = key(
        None, metavar="NAME ...", help="Use only these datasets (the `dataset` column) of the source; null: all."
    )
    check_images: str = key(
        DEFAULT_IMAGE_CHECK,
        role=CONTROL,
        metavar=choice_metavar(IMAGE_CHECKS),
        help="Image check of folder trees and dataset_roots builds, before training: full decodes every image once, "
        "so a truncated or corrupt file stops the run (or, with on_error: skip, is left out) at start instead of "
        "mid-epoch, for about 0.1 ms per small image; header only identifies the format; exists only the file.",
    )
    image_size: int | None = key(
        None, help="Input resolution in pixels; null: the backbone image processor's crop size."
    )
    dataset_config: str | None = key(
        None,
        role=CONTROL,
        metavar="NAME",
        help="The configuration (subset) of a Hub dataset_path: load_dataset's `name`.",
    )
    dataset_revision: str | None = key(
        None, role=CONTROL, metavar="REVISION", help="The revision (branch, tag or commit) of a Hub dataset_path."
    )
    image_column: str = key(
        IMAGE_COLUMN,
        before=IMAGE_COLUMN,
        metavar="COLUMN",
        help="The column of a dataset_path dataset that holds the images.",
    )
    label_column: str = key(
        LABEL_COLUMN,
        before=LABEL_COLUMN,
        metavar="COLUMN",
        help="Its column of classes: strings, integers or a ClassLabel.",
    )
    domain_column: str | None = key(
        None,
        before=None,
        metavar="COLUMN",
        help="Its column of domains (several collections in one table); null: one domain.",
    )
    split_fractions: list[float] = key(
        default_factory=lambda: list(DEFAULT_SPLIT_FRACTIONS),
        before=list(DEFAULT_SPLIT_FRACTIONS),
        help="Train, validation and test fractions of each domain's classes, for a dataset_path without splits "
        "(the paper's half for test; docs/collections.md): three numbers.",
    )
    split_seed: int = key(0, before=0, help="Seed of the class split of a dataset_path without splits.")
    on_error: str = key(
        "stop",
        role=CONTROL,
        metavar=choice_metavar(ON_ERROR_CHOICES),
        help=f"An unreadable image in a folder tree: {', '.join(ON_ERROR_CHOICES)} (stop: exit 2 naming it; skip: "
        "leave it out, listed on stderr).",
    )

    def data_sources(self) -> dict[str, Any]:
        """The data-source keys that are set."""
        return {name: getattr(self, name) for name in DATA_SOURCES if getattr(self, name) is not None}

    def validate(self) -> DataConfig:
        """Check every key; raise :class:`InvalidConfigError` naming the first mistake. Returns ``self``."""
        check_types(self)
        self.validate_data()
        return self

    def validate_data(self) -> None:
        """The checks of the data keys' values (their types: :func:`~peft_puma.config.keys.check_types`)."""
        sources = self.data_sources()
        if len(sources) != 1:
            raise InvalidConfigError(
                f"Give exactly one data source among {', '.join(DATA_SOURCES)}; got {sorted(sources) or 'none'}."
            )
        if self.dataset_roots is not None:
            unknown = sorted(set(self.dataset_roots) - set(DATASET_SPECS))
            if unknown or not self.dataset_roots:
                raise InvalidConfigError(
                    f"dataset_roots has unknown dataset name(s) {unknown or '(empty mapping)'}; "
                    f"known: {', '.join(DATASET_SPECS)}."
                )
        if self.datasets is not None and not self.datasets:
            raise InvalidConfigError("datasets must be null (all datasets) or a non-empty list of dataset names.")
        check_choice("check_images", self.check_images, IMAGE_CHECKS)
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise InvalidConfigError(
                f"image_size must be at least {MIN_IMAGE_SIZE} pixels (or null: the backbone's own), got "
                f"{self.image_size!r}."
            )
        check_fractions(self.split_fractions)
        check_choice("on_error", self.on_error, ON_ERROR_CHOICES)
        self._refuse_path_keys_elsewhere()

    def _refuse_path_keys_elsewhere(self) -> None:
        """The keys of a dataset_path set for another source would silently do nothing: refuse them."""
        if self.dataset_path is not None:
            return
        changed = [name for name in _PATH_KEYS if getattr(self, name) != key_default(DataConfig, name)]
        if changed:
            source = next(iter(self.data_sources()))
            raise InvalidConfigError(
                f"{', '.join(changed)} appl{'ies' if len(changed) == 1 else 'y'} to a dataset_path only; this "
                f"config reads {source}. Remove {'it' if len(changed) == 1 else 'them'}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Every key, flat, in declaration order: the ``config`` of a run file."""
        return dataclasses.asdict(self)
