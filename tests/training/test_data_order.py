"""The trainer's batches (peft_puma.data.make_train_loader, as the training loop calls it): an epoch is a pure
function of (seed, epoch), each process gets its slice of the global batch, a resumed epoch continues with the same
batches, and the pixels depend neither on the number of processes nor on DataLoader workers (docs/training.md)."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from peft_puma.data.loader import make_train_loader
from peft_puma.data.transforms import make_train_transform

LABELS = [100 + i // 5 for i in range(60)]  # 12 classes of 5 rows, labels not starting at 0
NAMES = ["big"] * 45 + ["small"] * 15


@pytest.fixture(scope="module")
def table() -> datasets.Dataset:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (10 + i % 5, 12, 3), dtype=np.uint8)) for i in range(60)]
    columns = {"image": images, "label": LABELS, "dataset": NAMES, "role": ["train"] * 60}
    return datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())


def _batches(table, sampler: str, processes=1, rank=0, epoch=0, start=0, augment_seed=0, num_workers=0):
    batches = make_train_loader(
        table,
        make_train_transform(8, [0.5] * 3, [0.5] * 3, seed=augment_seed),
        sampler=sampler,
        seed=0,
        per_device_batch_size=12 // processes,
        samples_per_class=3,
        num_processes=processes,
        process_index=rank,
        num_workers=num_workers,
    )
    batches.sampler.set_position(epoch, start)
    return [(batch["pixel_values"], batch["labels"]) for batch in batches.loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))


@pytest.mark.parametrize("sampler", ["shuffle", "balanced", "m_per_class"])
def test_process_slices_make_up_the_single_process_batches(table, sampler):
    single = _batches(table, sampler)
    assert len(single) == 5  # 60 rows // 12, the incomplete last batch dropped
    halves = [_batches(table, sampler, 2, rank) for rank in (0, 1)]
    glued = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(*halves)]
    assert _same(glued, single)  # rows and their crops alike
    thirds = [_batches(table, sampler, 3, rank, epoch=1) for rank in range(3)]
    glued = [(torch.cat([p for p, _ in parts]), torch.cat([y for _, y in parts])) for parts in zip(*thirds)]
    assert _same(glued, _batches(table, sampler, epoch=1))


def test_dataloader_workers_do_not_change_the_batches(table):
    assert _same(_batches(table, "shuffle", 2, 1, num_workers=2), _batches(table, "shuffle", 2, 1))


def test_epochs_differ_and_repeat_with_the_seed(table):
    assert _same(_batches(table, "shuffle", epoch=0), _batches(table, "shuffle", epoch=0))
    assert not _same(_batches(table, "shuffle", epoch=0), _batches(table, "shuffle", epoch=1))
    assert not _same(_batches(table, "shuffle", augment_seed=1), _batches(table, "shuffle"))  # same rows, other crops


def test_a_resumed_epoch_continues_with_the_same_batches(table):
    for sampler in ("shuffle", "m_per_class"):
        assert _same(_batches(table, sampler, epoch=3, start=2), _batches(table, sampler, epoch=3)[2:])
    assert _same(_batches(table, "shuffle", 2, 1, epoch=3, start=4), _batches(table, "shuffle", 2, 1, epoch=3)[4:])


def test_labels_are_class_indices_and_m_per_class_batches_hold_m_rows_of_each_class(table):
    for _, labels in _batches(table, "m_per_class"):
        assert sorted(Counter(labels.tolist()).values()) == [3, 3, 3, 3]
        assert 0 <= labels.min() and labels.max() < 12


def test_balanced_sampling_draws_the_datasets_equally(table):
    batches = make_train_loader(
        table,
        make_train_transform(8, [0.5] * 3, [0.5] * 3),
        sampler="balanced",
        seed=0,
        per_device_batch_size=12,
        samples_per_class=3,
        num_processes=1,
        process_index=0,
    )
    rows = [row for batch in batches.sampler for row, _, _ in batch]
    counts = Counter(NAMES[row] for row in rows)
    assert abs(counts["big"] - counts["small"]) <= 1
