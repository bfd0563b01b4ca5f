"""The order of training rows: one epoch is a pure function of ``(seed, epoch)``, cut into global batches.

Three epoch orders (docs/data.md, "Samplers and the training loader"), each a ``Sampler[int]`` that reshuffles
through ``set_epoch(epoch)``:

- :class:`ShuffleSampler`: the published plain shuffle over the union of all training sets, so large datasets (SOP,
  In-shop) dominate batches as in the paper (arXiv 2309.08944);
- :class:`DatasetBalancedSampler`: every dataset of the union drawn equally often;
- :class:`MPerClassSampler`: batches of ``batch_size / m`` classes with ``m`` rows each, for pair losses.

:class:`GlobalBatchSampler` cuts an epoch's order into global batches (``per-process batch x processes`` rows) of
``(row, epoch, position)`` keys and can start at any batch of any epoch (exact resumption). It knows nothing about
processes: Accelerate's ``BatchSamplerShard`` (``split_batches=True``, see :func:`peft_puma.data.make_train_loader`)
gives process ``r`` the ``r``-th slice of every global batch, so the gathered batch is the same on any number of
processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from ..errors import InvalidConfigError, InvalidInputError

_MIX = 1_000_003  # odd constant that spreads (seed, epoch) over the seed space (MPerClassSampler)


class _EpochSampler(Sampler[int]):
    """A seeded order of row indices, a new one per epoch (``set_epoch``, as ``DistributedSampler``)."""

    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch`` (a pure function of ``(seed, epoch)``)."""
        self.epoch = epoch


class ShuffleSampler(_EpochSampler):
    """Plain shuffle over all rows, a new permutation every epoch (the published sampling)."""

    def __init__(self, num_rows: int, *, seed: int = 0) -> None:
        if num_rows < 1:
            raise InvalidInputError(f"cannot sample from {num_rows} rows")
        self.num_rows = num_rows
        self.seed = seed

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_rows, generator=generator).tolist())


class DatasetBalancedSampler(_EpochSampler):
    """Draw every dataset of the union equally often (the ``balanced`` option).

    ``dataset_names[i]`` is the origin of row ``i`` (the ``dataset`` column). An epoch has ``num_samples`` draws
    (default: the number of rows), split as evenly as possible between the datasets and shuffled; within a dataset the
    rows are taken from a fresh permutation, wrapping around (and reshuffling) when a small dataset runs out, so every
    row of a small dataset is seen before any repeats and large datasets are subsampled.
    """

    def __init__(self, dataset_names: Sequence[str], *, num_samples: int | None = None, seed: int = 0) -> None:
        if len(dataset_names) == 0:
            raise InvalidInputError("cannot sample from an empty dataset")
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(dataset_names):
            groups.setdefault(name, []).append(index)
        self.groups = {name: torch.tensor(groups[name]) for name in sorted(groups)}
        self.num_samples = len(dataset_names) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise InvalidConfigError(f"num_samples must be positive, got {num_samples}")
        self.seed = seed

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        names = list(self.groups)
        base, extra = divmod(self.num_samples, len(names))
        # Which datasets get the `extra` leftover draws is itself random, so no dataset is favoured across epochs.
        lucky = set(torch.randperm(len(names), generator=generator)[:extra].tolist())
        picks = [self._draw(self.groups[name], base + (k in lucky), generator) for k, name in enumerate(names)]
        return iter(torch.cat(picks)[torch.randperm(self.num_samples, generator=generator)].tolist())

    @staticmethod
    def _draw(rows: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        passes = [rows[torch.randperm(len(rows), generator=generator)] for _ in range(-(-count // len(rows)))]
        return torch.cat(passes)[:count] if passes else rows[:0]


class MPerClassSampler(_EpochSampler):
    """``len(labels) // batch_size`` batches, each ``batch_size / m`` distinct classes with ``m`` rows each.

    Pair losses need this: a class contributes to them only with a positive in the batch. Rows of a class are drawn
    without replacement while it has enough (a small class repeats rows rather than being left out). We keep this one
    instead of pytorch-metric-learning's ``MPerClassSampler``, which takes no seed: it draws from the process-global
    numpy RNG and shuffles its label list in place, so its epoch depends on every earlier draw in the process rather
    than on ``(seed, epoch)``, and a resumed run could not replay it (tests/data/test_samplers.py shows this).
    """

    def __init__(self, labels: Sequence[int], *, batch_size: int, m: int, seed: int = 0) -> None:
        if m < 1 or batch_size < 1 or batch_size % m:
            raise InvalidConfigError(f"The global batch ({batch_size}) must be a multiple of samples_per_class ({m}).")
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_class.setdefault(int(label), []).append(index)
        self.rows_of = [by_class[label] for label in sorted(by_class)]
        self.classes_per_batch = batch_size // m
        if self.classes_per_batch > len(self.rows_of):
            raise InvalidConfigError(
                f"A batch of {batch_size} with samples_per_class {m} needs {self.classes_per_batch} classes; the "
                f"training set has {len(self.rows_of)}."
            )
        self.batch_size, self.m, self.seed = batch_size, m, seed
        self.num_batches = len(labels) // batch_size

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * _MIX + self.epoch)
        order: list[int] = []
        for _ in range(self.num_batches):
            for k in torch.randperm(len(self.rows_of), generator=generator)[: self.classes_per_batch].tolist():
                rows = self.rows_of[k]
                picks = torch.randperm(len(rows), generator=generator).tolist()
                while len(picks) < self.m:
                    picks += torch.randperm(len(rows), generator=generator).tolist()
                order.extend(rows[i] for i in picks[: self.m])
        return iter(order)


class GlobalBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """The global batches of an epoch, as ``(row, epoch, position in the epoch's order)`` keys.

    ``order`` is one of the epoch samplers above; the incomplete last batch is dropped, so every process runs the same
    number of equally large steps. ``set_position(epoch, batch)`` selects where the next iteration starts. (There is
    deliberately no ``set_epoch``: Accelerate's loader would call it with its own count of iterations, which restarts
    at 0 after a resume.)
    """

    drop_last = True  # read by Accelerate's BatchSamplerShard

    def __init__(self, order: _EpochSampler, batch_size: int) -> None:
        if batch_size < 1:
            raise InvalidConfigError(f"batch_size must be positive, got {batch_size}")
        self.order, self.batch_size = order, batch_size
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        return len(self.order) // self.batch_size

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Start the next iteration at batch ``start_batch`` of ``epoch``."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return max(self.batches_per_epoch() - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        self.order.set_epoch(self.epoch)
        rows, epoch, size = list(self.order), self.epoch, self.batch_size
        for batch in range(self.start_batch, len(rows) // size):
            yield [(rows[p], epoch, p) for p in range(batch * size, (batch + 1) * size)]
