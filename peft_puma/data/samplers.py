"""Training-row samplers: the published plain shuffle and the dataset-balanced option (method.md section 6).

The paper samples a plain shuffle over the concatenation of all training sets, so large datasets (SOP, In-shop) dominate
batches; that imbalance is part of the published method. :class:`DatasetBalancedSampler` is the option that draws every
dataset equally often instead.

Both samplers are seeded, reshuffle per epoch through ``set_epoch(epoch)`` (as ``DistributedSampler``) and can hand each
of ``num_replicas`` processes a disjoint, equally long share of the epoch (``rank``). Under Accelerate leave
``num_replicas=1``: ``accelerator.prepare`` shards the batches itself and forwards ``set_epoch``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import InvalidConfigError, InvalidInputError
from .schema import DATASET_COLUMN, column_values


def _check_replicas(num_replicas: int, rank: int) -> None:
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise InvalidConfigError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")


def _shard(indices: list[int], num_replicas: int, rank: int) -> list[int]:
    """This rank's share; the epoch is padded by wrapping around so every rank gets the same number of rows."""
    if num_replicas == 1:
        return indices
    total = -(-len(indices) // num_replicas) * num_replicas
    padded = list(indices)
    while len(padded) < total:
        padded += indices[: total - len(padded)]
    return padded[rank::num_replicas]


class ShuffleSampler(Sampler[int]):
    """Plain shuffle over all rows, a new permutation every epoch (the published sampling, method.md section 6)."""

    def __init__(self, num_rows: int, *, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        if num_rows < 1:
            raise InvalidInputError(f"cannot sample from {num_rows} rows")
        _check_replicas(num_replicas, rank)
        self.num_rows = num_rows
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (call before each epoch, as with ``DistributedSampler``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_rows // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_rows, generator=generator).tolist()
        return iter(_shard(order, self.num_replicas, self.rank))


class DatasetBalancedSampler(Sampler[int]):
    """Draw every dataset of the union equally often (the "balanced" option of method.md section 6).

    ``dataset_names[i]`` is the origin of row ``i`` (the ``dataset`` column). An epoch has ``num_samples`` draws
    (default: the number of rows), split as evenly as possible between the datasets and shuffled; within a dataset the
    rows are taken from a fresh permutation, wrapping around (and reshuffling) when a small dataset runs out, so every
    row of a small dataset is seen before any repeats and large datasets are subsampled.
    """

    def __init__(
        self,
        dataset_names: Sequence[str],
        *,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if len(dataset_names) == 0:
            raise InvalidInputError("cannot sample from an empty dataset")
        _check_replicas(num_replicas, rank)
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(dataset_names):
            groups.setdefault(name, []).append(index)
        self.groups = {name: torch.tensor(groups[name]) for name in sorted(groups)}
        self.num_samples = len(dataset_names) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise InvalidConfigError(f"num_samples must be positive, got {num_samples}")
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> DatasetBalancedSampler:
        """Build from a unified ``datasets.Dataset`` (its ``dataset`` column), ignoring any transform set on it."""
        return cls(_column(dataset, DATASET_COLUMN), **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch`` (call before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_samples // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        names = list(self.groups)
        base, extra = divmod(self.num_samples, len(names))
        # Which datasets get the `extra` leftover draws is itself random, so no dataset is favoured across epochs.
        lucky = set(torch.randperm(len(names), generator=generator)[:extra].tolist())
        picks: list[torch.Tensor] = []
        for position, name in enumerate(names):
            count = base + (position in lucky)
            picks.append(self._draw(self.groups[name], count, generator))
        order = torch.cat(picks)[torch.randperm(self.num_samples, generator=generator)]
        return iter(_shard(order.tolist(), self.num_replicas, self.rank))

    @staticmethod
    def _draw(rows: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        passes = [rows[torch.randperm(len(rows), generator=generator)] for _ in range(-(-count // len(rows)))]
        return torch.cat(passes)[:count] if passes else rows[:0]


def _column(dataset: Any, name: str) -> list[Any]:
    if name not in getattr(dataset, "column_names", ()):
        raise InvalidInputError(f"dataset has no {name!r} column; build it with build_unified_dataset")
    return column_values(dataset, name)


def make_train_loader(
    dataset: Any,
    batch_size: int,
    *,
    balanced: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = True,
    num_replicas: int = 1,
    rank: int = 0,
    **loader_kwargs: Any,
) -> DataLoader:
    """A DataLoader over training rows: plain shuffle (published, default) or dataset-balanced (``balanced=True``).

    ``dataset`` is the ``"train"`` split of :func:`build_unified_dataset` with a transform set (``with_transform``).
    The sampler is reachable as ``loader.sampler``; call ``loader.sampler.set_epoch(epoch)`` before each epoch. Worker
    seeds derive from ``seed`` too, so crops are reproducible.
    """
    if batch_size < 1:
        raise InvalidConfigError(f"batch_size must be positive, got {batch_size}")
    if balanced:
        sampler: Sampler[int] = DatasetBalancedSampler.from_dataset(
            dataset, seed=seed, num_replicas=num_replicas, rank=rank
        )
    else:
        sampler = ShuffleSampler(len(dataset), seed=seed, num_replicas=num_replicas, rank=rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        **loader_kwargs,
    )
