"""The order of training rows: a pure function of (seed, epoch), sliced per process, resumable at any batch, and
augmented per sample (method.md section 6 sampling; issue: exact resumption)."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest
import torch

from peft_puma.data.transforms import make_train_transform
from peft_puma.errors import InvalidConfigError
from peft_puma.training.data import AugmentedRows, EpochOrder, GlobalBatchSampler, class_balanced_order

LABELS = [i // 5 for i in range(60)]  # 12 classes of 5 rows
NAMES = ["big"] * 45 + ["small"] * 15


def _table() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"label": LABELS, "dataset": NAMES})


def _batches(sampler: str, processes: int, rank: int, epoch: int = 0, start: int = 0):
    order = EpochOrder(_table(), sampler, seed=0, batch_size=12, samples_per_class=3)
    batches = GlobalBatchSampler(
        order, per_device_batch_size=12 // processes, num_processes=processes, process_index=rank
    )
    batches.set_position(epoch, start)
    return list(batches)


@pytest.mark.parametrize("sampler", ["shuffle", "balanced", "m_per_class"])
def test_process_slices_make_up_the_single_process_batches(sampler):
    single = _batches(sampler, 1, 0)
    halves = [_batches(sampler, 2, rank) for rank in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == single  # rows and augmentation seeds alike
    assert len(single) == 5  # 60 rows // 12, the incomplete last batch dropped


def test_epochs_differ_and_repeat_with_the_seed():
    assert _batches("shuffle", 1, 0, epoch=0) == _batches("shuffle", 1, 0, epoch=0)
    assert _batches("shuffle", 1, 0, epoch=0) != _batches("shuffle", 1, 0, epoch=1)


def test_a_resumed_epoch_continues_with_the_same_batches():
    assert _batches("shuffle", 1, 0, epoch=3, start=2) == _batches("shuffle", 1, 0, epoch=3)[2:]


def test_m_per_class_batches_hold_m_rows_of_each_class():
    order = class_balanced_order(LABELS, batch_size=12, samples_per_class=3, seed=0)
    for start in range(0, len(order), 12):
        counts = Counter(LABELS[i] for i in order[start : start + 12])
        assert sorted(counts.values()) == [3, 3, 3, 3]
    with pytest.raises(InvalidConfigError, match="needs 20 classes"):
        class_balanced_order(LABELS, batch_size=40, samples_per_class=2, seed=0)


def test_balanced_sampling_draws_the_datasets_equally():
    rows = [row for batch in _batches("balanced", 1, 0) for row, _ in batch]
    counts = Counter(NAMES[row] for row in rows)
    assert abs(counts["big"] - counts["small"]) <= 1


def test_augmentation_depends_on_the_sample_seed_only():
    import numpy as np
    from PIL import Image

    ramp = np.add.outer(np.arange(20), np.arange(24)).astype(np.uint8) * 5  # crops and flips show in the pixels
    images = [Image.fromarray(np.stack([ramp, ramp + 10 * i, 255 - ramp], axis=2)) for i in range(3)]
    table = datasets.Dataset.from_dict(
        {"image": images, "label": [0, 1, 1]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    rows = AugmentedRows(table, make_train_transform(16, [0.5] * 3, [0.5] * 3), {0: 0, 1: 1})
    first = rows.__getitems__([(0, 11), (1, 12), (2, 13)])
    alone = rows[(1, 12)]  # same sample, same seed, fetched alone and after other samples
    torch.testing.assert_close(alone[0], first[1][0])
    assert alone[1] == 1
    other_seed = rows[(1, 99)][0]
    assert not torch.equal(other_seed, alone[0])
