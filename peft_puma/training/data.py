"""Training and test rows for a run: the data source of the config, the batch order, and seeded augmentation.

Resuming must replay exactly what an uninterrupted run would have seen (issue: faults), whatever the number of
processes or DataLoader workers. So the order of an epoch is a pure function of ``(seed, epoch)``, cut into global
batches of ``per_device_batch_size x num_processes`` rows of which process ``r`` takes the ``r``-th slice (the
gathered batch is then the same global batch on any number of processes), and every sample's crop and flip are drawn
from a generator seeded by ``(seed, epoch, position in the epoch)`` rather than from a stream that depends on which
worker handled which batch before. A resumed epoch simply starts at its next batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.schema import DATASET_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, PIXEL_VALUES, ROLE_COLUMN, TEST_SPLIT, TRAIN_SPLIT
from ..errors import DatasetLayoutError, InvalidConfigError
from .config import DataConfig

_MIX = 1_000_003  # odd constant that spreads (seed, epoch, position) over the 63-bit seed space


def load_unified(config: DataConfig) -> datasets.DatasetDict:
    """The ``{"train", "test"}`` splits of the configured source, restricted to ``config.datasets`` when given."""
    if config.dataset_path is not None:
        try:
            data = datasets.load_from_disk(config.dataset_path)
        except FileNotFoundError as error:
            raise DatasetLayoutError(
                f"dataset_path {config.dataset_path!r} holds no dataset saved with save_to_disk ({error})."
            ) from None
    elif config.uml_mini_dir is not None:
        from ..data.uml_mini import open_uml_mini

        data, _ = open_uml_mini(config.uml_mini_dir)
    else:
        from ..data.builder import build_unified_dataset

        data = build_unified_dataset(config.dataset_roots, check_images=config.check_images)
    if not isinstance(data, datasets.DatasetDict) or not {TRAIN_SPLIT, TEST_SPLIT} <= set(data):
        raise DatasetLayoutError(
            f"The data source must be a DatasetDict with {TRAIN_SPLIT!r} and {TEST_SPLIT!r} splits; got "
            f"{list(data) if isinstance(data, datasets.DatasetDict) else type(data).__name__}."
        )
    missing = {IMAGE_COLUMN, LABEL_COLUMN, DATASET_COLUMN, ROLE_COLUMN} - set(data[TRAIN_SPLIT].column_names)
    if missing:
        raise DatasetLayoutError(f"The data source lacks column(s) {sorted(missing)} of the row schema (docs/data.md).")
    return select_datasets(data, config.datasets)


def describe_source(config: DataConfig) -> dict[str, Any]:
    """What a run records about its data source: for UML-mini the build's seed, scale and builder version."""
    if config.uml_mini_dir is not None:
        from ..data.uml_mini import provenance, read_manifest

        return provenance(config.uml_mini_dir, read_manifest(config.uml_mini_dir) or {})
    if config.dataset_path is not None:
        return {"dataset_path": config.dataset_path}
    return {"dataset_roots": dict(config.dataset_roots or {})}


def column(dataset: datasets.Dataset, name: str) -> list[Any]:
    """One column as a plain list, read from Arrow in one go (``dataset[name]`` is a lazy, row-by-row ``Column`` in
    datasets >= 4) and ignoring any transform set on the dataset."""
    return dataset.with_format(None).select_columns([name]).with_format("arrow")[:][name].to_pylist()


def select_datasets(data: datasets.DatasetDict, names: Sequence[str] | None) -> datasets.DatasetDict:
    """Keep the rows of the named datasets; an unknown name is an error listing those present."""
    if names is None:
        return data
    present = list(dict.fromkeys(column(data[TRAIN_SPLIT], DATASET_COLUMN) + column(data[TEST_SPLIT], DATASET_COLUMN)))
    unknown = sorted(set(names) - set(present))
    if unknown:
        raise InvalidConfigError(f"Unknown dataset(s) {unknown} in `datasets`; this source has {present}.")
    wanted = set(names)
    return datasets.DatasetDict(
        {
            split: table.filter(lambda name: name in wanted, input_columns=DATASET_COLUMN)
            for split, table in data.items()
        }
    )


def dataset_sizes(data: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """``{dataset: {train_images, train_classes, test_images, test_classes}}`` in order of appearance."""
    sizes: dict[str, dict[str, int]] = {}
    for split in (TRAIN_SPLIT, TEST_SPLIT):
        names, labels = column(data[split], DATASET_COLUMN), column(data[split], LABEL_COLUMN)
        classes: dict[str, set[int]] = {}
        for name, label in zip(names, labels):
            classes.setdefault(name, set()).add(label)
            entry = sizes.setdefault(
                name, dict.fromkeys(("train_images", "train_classes", "test_images", "test_classes"), 0)
            )
            entry[f"{split}_images"] += 1
        for name, members in classes.items():
            sizes[name][f"{split}_classes"] = len(members)
    return sizes


# ---------------------------------------------------------------------------------------------------- batch order
def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the augmentation of the sample at ``position`` of ``epoch``'s order."""
    return ((seed * _MIX + epoch) * _MIX + position) % (2**63)


def class_balanced_order(labels: Sequence[int], batch_size: int, samples_per_class: int, seed: int) -> list[int]:
    """An epoch of ``len(labels) // batch_size`` batches, each ``batch_size / samples_per_class`` distinct classes
    with ``samples_per_class`` rows each (drawn without replacement while a class has enough rows): the sampling pair
    losses need, since a class contributes only with a positive in the batch."""
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    classes = sorted(by_class)
    per_batch = batch_size // samples_per_class
    if per_batch > len(classes):
        raise InvalidConfigError(
            f"A batch of {batch_size} with samples_per_class {samples_per_class} needs {per_batch} classes; the "
            f"training set has {len(classes)}."
        )
    order: list[int] = []
    for _ in range(len(labels) // batch_size):
        for k in torch.randperm(len(classes), generator=generator)[:per_batch].tolist():
            rows = by_class[classes[k]]
            picks = torch.randperm(len(rows), generator=generator).tolist()
            while len(picks) < samples_per_class:  # small classes repeat rows rather than being excluded
                picks += torch.randperm(len(rows), generator=generator).tolist()
            order.extend(rows[i] for i in picks[:samples_per_class])
    return order


class EpochOrder:
    """The row order of each epoch for the configured sampler (method.md section 6: plain shuffle by default)."""

    def __init__(self, train: datasets.Dataset, sampler: str, seed: int, batch_size: int, samples_per_class: int):
        self.kind, self.seed = sampler, seed
        self.batch_size, self.samples_per_class = batch_size, samples_per_class
        self.num_rows = train.num_rows
        if sampler == "balanced":
            from ..data.samplers import DatasetBalancedSampler

            self._balanced = DatasetBalancedSampler(column(train, DATASET_COLUMN), seed=seed)
        elif sampler == "m_per_class":
            self._labels = column(train, LABEL_COLUMN)
            if batch_size % samples_per_class:
                raise InvalidConfigError(
                    f"The global batch ({batch_size}) must be a multiple of samples_per_class ({samples_per_class})."
                )

    def __call__(self, epoch: int) -> list[int]:
        if self.kind == "balanced":
            self._balanced.set_epoch(epoch)
            return list(iter(self._balanced))
        if self.kind == "m_per_class":
            return class_balanced_order(self._labels, self.batch_size, self.samples_per_class, self.seed * _MIX + epoch)
        from ..data.samplers import ShuffleSampler

        sampler = ShuffleSampler(self.num_rows, seed=self.seed)
        sampler.set_epoch(epoch)
        return list(iter(sampler))


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """This process's slice of every global batch of an epoch, as ``(row, augmentation seed)`` pairs.

    The last incomplete global batch is dropped, so every process runs the same number of steps with equally large
    slices (the all-gather of the loss needs that). ``set_position(epoch, batch)`` selects where iteration starts.
    """

    def __init__(self, order: EpochOrder, per_device_batch_size: int, num_processes: int, process_index: int):
        self.order = order
        self.per_device = per_device_batch_size
        self.num_processes, self.process_index = num_processes, process_index
        self.global_batch = per_device_batch_size * num_processes
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return self.order.num_rows // self.global_batch

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order(self.epoch)
        for batch in range(self.start_batch, len(order) // self.global_batch):
            first = batch * self.global_batch + self.process_index * self.per_device
            yield [
                (order[p], sample_seed(self.order.seed, self.epoch, p)) for p in range(first, first + self.per_device)
            ]


class AugmentedRows(Dataset):
    """Training rows with the training transform applied under a per-sample seed (see the module docstring).

    Items are ``(pixel_values, class index)``; labels are mapped to ``0 .. C-1`` so that they index the loss proxies
    whichever subset of datasets is used.
    """

    def __init__(self, rows: datasets.Dataset, transform: Any, label_index: dict[int, int]):
        self.rows = rows.select_columns([IMAGE_COLUMN, LABEL_COLUMN])
        self.transform = transform
        self.label_index = label_index

    def __len__(self) -> int:
        return self.rows.num_rows

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[tuple[torch.Tensor, int]]:
        batch = self.rows[[row for row, _ in keys]]
        items = []
        for image, label, (_, seed) in zip(batch[IMAGE_COLUMN], batch[LABEL_COLUMN], keys):
            self.transform.generator.manual_seed(seed)  # the transform draws its crop and flip from this generator
            pixels = self.transform({IMAGE_COLUMN: [image]})[PIXEL_VALUES][0]
            items.append((pixels, self.label_index[label]))
        return items

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        return self.__getitems__([key])[0]


def _collate(items: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.stack([p for p, _ in items]), "labels": torch.tensor([y for _, y in items])}


@dataclass
class TrainBatches:
    """The DataLoader of a run's training batches and the sampler that positions it."""

    loader: DataLoader
    sampler: GlobalBatchSampler
    num_classes: int


def make_train_batches(
    train: datasets.Dataset,
    transform: Any,
    *,
    sampler: str,
    seed: int,
    per_device_batch_size: int,
    samples_per_class: int,
    num_processes: int,
    process_index: int,
    num_workers: int = 0,
) -> TrainBatches:
    """Training batches of this process; see :class:`GlobalBatchSampler` and :class:`AugmentedRows`."""
    labels = sorted(set(column(train, LABEL_COLUMN)))
    global_batch = per_device_batch_size * num_processes
    if train.num_rows < global_batch:
        raise InvalidConfigError(
            f"The global batch ({per_device_batch_size} per process x {num_processes} processes = {global_batch}) is "
            f"larger than the training set ({train.num_rows} rows): an epoch would have no batch."
        )
    order = EpochOrder(train, sampler, seed, global_batch, samples_per_class)
    batch_sampler = GlobalBatchSampler(order, per_device_batch_size, num_processes, process_index)
    rows = AugmentedRows(train, transform, {label: index for index, label in enumerate(labels)})
    # A private generator: a DataLoader otherwise draws its workers' base seed from the global RNG at every epoch
    # start, which would shift the stochastic gates of a resumed run against an uninterrupted one.
    loader = DataLoader(
        rows,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=_collate,
        generator=torch.Generator().manual_seed(seed),
    )
    return TrainBatches(loader, batch_sampler, len(labels))
