"""The data keys of a config: where the unified benchmark comes from (exactly one source) and which of its datasets
to use. Training's config extends them (:class:`peft_puma.training.TrainingConfig`), and ``python -m
peft_puma.evaluate`` reads them alone (docs/training.md, "Config keys")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config.keys import CONTROL, check_choice, check_types, key
from ..errors import InvalidConfigError
from .images import IMAGE_CHECKS
from .specs import DATASET_SPECS
from .transforms import MIN_IMAGE_SIZE

DATA_SOURCES: tuple[str, ...] = ("dataset_path", "dataset_roots", "uml_mini_dir")


@dataclass
class DataConfig:
    """Where the unified benchmark comes from (exactly one source) and which of its datasets to use.

    The paths are :data:`~peft_puma.config.keys.CONTROL` keys: a run moved to another machine, whose data lies
    elsewhere, is the same run; the images and classes it trains on are compared instead (docs/training.md).
    """

    _argument_group_name = "data keys"  # the --help section of HfArgumentParser (not a field)

    dataset_path: str | None = key(
        None,
        role=CONTROL,
        help="A DatasetDict (train/test) written by `save_to_disk` in the row schema of docs/data.md.",
    )
    dataset_roots: dict[str, str] | None = key(
        None,
        role=CONTROL,
        help="Build the paper benchmark from {name: folder, Hub id or 'hub'} with "
        "peft_puma.data.build_unified_dataset (names: cub, cars, sop, inshop, nabirds, dogs, flowers, aircraft).",
    )
    uml_mini_dir: str | None = key(
        None, role=CONTROL, help="UML-mini, loaded from this folder (built there first when missing)."
    )
    datasets: list[str] | None = key(
        None, help="Use only these datasets (the `dataset` column) of the source. Default: all."
    )
    check_images: str = key(
        "header", role=CONTROL, help=f"Image check of dataset_roots builds: {', '.join(IMAGE_CHECKS)}."
    )
    image_size: int | None = key(None, help="Input resolution; default: the backbone image processor's crop size.")

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

    def to_dict(self) -> dict[str, Any]:
        """Every key, flat, in declaration order: the ``config`` of a run file."""
        return dataclasses.asdict(self)
