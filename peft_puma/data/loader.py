"""The training loader: one process's share of the seeded global batches, augmented per sample.

Resuming must replay exactly what an uninterrupted run would have seen, whatever the number of processes or DataLoader
workers. Hence three pure functions: the order of an epoch of ``(seed, epoch)`` (:mod:`.samplers`), the cut into
global batches of which process ``r`` takes the ``r``-th slice (Accelerate's ``prepare_data_loader`` with
``split_batches=True``, the sharding ``Accelerator.prepare`` uses), and each sample's crop and flip of ``(seed, epoch,
position in the epoch)`` (:mod:`.transforms`). A resumed epoch simply starts at its next batch
(``sampler.set_position``). See docs/data.md, "Samplers and the training loader".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader, Dataset, get_worker_info

from ..errors import InvalidConfigError, InvalidInputError
from .samplers import DatasetBalancedSampler, GlobalBatchSampler, MPerClassSampler, ShuffleSampler
from .schema import DATASET_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, PIXEL_VALUES, column_values
from .transforms import EPOCH_COLUMN, POSITION_COLUMN, TrainTransform

SAMPLERS: tuple[str, ...] = ("shuffle", "balanced", "m_per_class")
LABELS: str = "labels"  # the batch key of the class indices
_UNREADABLE = "unreadable"  # the batch key a worker returns instead of pixels when an image cannot be read


class AugmentedRows(Dataset):
    """Training rows under the training transform, fetched by ``(row, epoch, position)`` keys.

    A fetch returns the collated batch ``{"pixel_values": B x 3 x S x S, "labels": B}``; labels are mapped to
    ``0 .. C-1`` (sorted) so that they index the loss proxies whichever subset of datasets is used. Images are read
    undecoded (a path, or bytes) and decoded by the transform (:func:`.images.decode_image`), in the DataLoader's
    workers, so that a file that cannot be decoded is named.
    """

    def __init__(self, rows: datasets.Dataset, transform: TrainTransform, label_index: dict[int, int]) -> None:
        rows = rows.with_format(None).select_columns([IMAGE_COLUMN, LABEL_COLUMN])
        self.rows = rows.cast_column(IMAGE_COLUMN, datasets.Image(decode=False))  # metadata only: nothing is copied
        self.transform = transform
        self.label_index = label_index

    def __len__(self) -> int:
        return self.rows.num_rows

    def __getitems__(self, keys: list[tuple[int, int, int]]) -> dict[str, torch.Tensor]:
        rows = self.rows[[row for row, _, _ in keys]]
        batch = {
            IMAGE_COLUMN: rows[IMAGE_COLUMN],
            EPOCH_COLUMN: [epoch for _, epoch, _ in keys],
            POSITION_COLUMN: [position for _, _, position in keys],
        }
        labels = torch.tensor([self.label_index[label] for label in rows[LABEL_COLUMN]])
        try:
            pixel_values = self.transform(batch)[PIXEL_VALUES]
        except InvalidInputError as error:
            if get_worker_info() is None:
                raise
            return {_UNREADABLE: str(error)}  # raised again, as the one line it is, by the main process
        return {PIXEL_VALUES: pixel_values, LABELS: labels}

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        return {name: values[0] for name, values in self.__getitems__([key]).items()}


def _collated(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch  # AugmentedRows.__getitems__ returns the batch collated


class WorkerErrors:
    """A prepared DataLoader whose workers' unreadable images stop the run with the one-line error they are.

    A DataLoader re-raises a worker's exception with the worker's whole traceback in its message; a worker of
    :class:`AugmentedRows` returns the error's message instead, and iterating here raises it in the main process.
    Everything else is the wrapped loader's.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.loader:
            if _UNREADABLE in batch:
                raise InvalidInputError(batch[_UNREADABLE])
            yield batch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (an object being copied): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


@dataclass
class TrainLoader:
    """This process's training batches (``loader``) and the global batch sampler that positions them."""

    loader: WorkerErrors  # yields {"pixel_values", "labels"}: this process's slice of each global batch
    sampler: GlobalBatchSampler  # set_position(epoch, batch) before iterating; batches_per_epoch()
    num_classes: int


def make_train_loader(
    dataset: datasets.Dataset,
    transform: TrainTransform,
    *,
    per_device_batch_size: int,
    sampler: str = "shuffle",
    seed: int = 0,
    samples_per_class: int = 4,
    num_processes: int = 1,
    process_index: int = 0,
    num_workers: int = 0,
) -> TrainLoader:
    """Training batches of process ``process_index`` of ``num_processes`` over the ``"train"`` split ``dataset``.

    ``sampler``: ``"shuffle"`` (published), ``"balanced"`` (datasets equally often) or ``"m_per_class"`` (batches of
    ``samples_per_class`` rows per class, for pair losses). Global batches hold ``per_device_batch_size x
    num_processes`` rows; call ``sampler.set_position(epoch, batch)`` before iterating ``loader``. Under Accelerate,
    create the ``Accelerator`` first and pass its ``num_processes`` / ``process_index``: the sharding reads (and would
    otherwise initialise) Accelerate's process state.
    """
    if sampler not in SAMPLERS:
        raise InvalidConfigError(f"Unknown sampler {sampler!r}; accepted: {', '.join(SAMPLERS)}.")
    if per_device_batch_size < 1:
        raise InvalidConfigError(f"per_device_batch_size must be positive, got {per_device_batch_size}")
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise InvalidConfigError(
            f"need num_processes >= 1 and 0 <= process_index < num_processes, got {num_processes}, {process_index}"
        )
    missing = {IMAGE_COLUMN, LABEL_COLUMN, DATASET_COLUMN} - set(dataset.column_names)
    if missing:
        raise InvalidInputError(f"dataset lacks column(s) {sorted(missing)} of the row schema (docs/data.md)")
    global_batch = per_device_batch_size * num_processes
    if dataset.num_rows < global_batch:
        raise InvalidConfigError(
            f"The global batch ({per_device_batch_size} per process x {num_processes} processes = {global_batch}) is "
            f"larger than the training set ({dataset.num_rows} rows): an epoch would have no batch."
        )
    labels = column_values(dataset, LABEL_COLUMN)
    if sampler == "balanced":
        order: Any = DatasetBalancedSampler(column_values(dataset, DATASET_COLUMN), seed=seed)
    elif sampler == "m_per_class":
        order = MPerClassSampler(labels, batch_size=global_batch, m=samples_per_class, seed=seed)
    else:
        order = ShuffleSampler(dataset.num_rows, seed=seed)
    batches = GlobalBatchSampler(order, global_batch)
    classes = sorted(set(labels))
    rows = AugmentedRows(dataset, transform, {label: index for index, label in enumerate(classes)})
    # A private generator: a DataLoader otherwise draws its workers' base seed from the global RNG at every epoch
    # start, which would shift the stochastic gates of a resumed run against an uninterrupted one.
    loader = DataLoader(
        rows,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_collated,
        generator=torch.Generator().manual_seed(seed),
    )
    # What Accelerator.prepare does to a loader, with split_batches=True given here rather than in the Accelerator's
    # config; rng_types=None: nothing of this loader draws from a shared RNG that would need synchronising.
    loader = prepare_data_loader(
        loader, num_processes=num_processes, process_index=process_index, split_batches=True, rng_types=None
    )
    return TrainLoader(WorkerErrors(loader), batches, len(classes))
