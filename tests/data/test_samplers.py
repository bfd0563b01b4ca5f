"""The epoch orders of docs/data.md ("Samplers and the training loader"): published shuffle, dataset-balanced and
m-per-class, each a pure function of (seed, epoch); and the training loader's options and argument checks."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image

from peft_puma.data import (
    DatasetBalancedSampler,
    MPerClassSampler,
    ShuffleSampler,
    make_train_loader,
    make_train_transform,
)
from peft_puma.errors import InvalidConfigError, InvalidInputError

# A union as imbalanced as the paper's: SOP-like 100 rows, CUB-like 10, a tiny dataset of 3.
NAMES = ["sop"] * 100 + ["cub"] * 10 + ["tiny"] * 3
LABELS = [i // 5 for i in range(60)]  # 12 classes of 5 rows


def _epoch(sampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_shuffle_is_a_permutation_that_changes_with_the_epoch() -> None:
    sampler = ShuffleSampler(50, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first != list(range(50)) and len(sampler) == 50
    assert list(sampler) == first  # same epoch, same order
    assert _epoch(sampler, 1) != first and sorted(sampler) == list(range(50))
    assert list(ShuffleSampler(50, seed=1)) != first


@pytest.mark.parametrize(
    "make",
    [
        lambda: ShuffleSampler(60, seed=5),
        lambda: DatasetBalancedSampler(NAMES, seed=5),
        lambda: MPerClassSampler(LABELS, batch_size=12, m=3, seed=5),
    ],
)
def test_an_epoch_is_a_pure_function_of_seed_and_epoch(make) -> None:
    used = make()
    for epoch in range(3):
        _epoch(used, epoch)
    assert _epoch(used, 3) == _epoch(make(), 3)  # what was drawn before (a resumed run has drawn nothing) is irrelevant


def test_pml_m_per_class_sampler_is_not_a_function_of_seed_and_epoch() -> None:
    """Why MPerClassSampler is ours: pytorch-metric-learning's takes no seed and no epoch, draws from the process-global
    numpy RNG, and shuffles its label list in place, so even re-seeding numpy does not replay an epoch."""
    from pytorch_metric_learning.samplers import MPerClassSampler as PMLSampler

    def draw(sampler, *, unrelated_draw: bool = False) -> list[int]:
        np.random.seed(0)
        if unrelated_draw:
            np.random.random(3)  # any other numpy user in the process
        return [int(i) for i in sampler]

    make = lambda: PMLSampler(LABELS, m=3, batch_size=12, length_before_new_iter=60)  # noqa: E731
    assert not hasattr(PMLSampler, "set_epoch")
    first = draw(make())
    assert draw(make()) == first
    assert draw(make(), unrelated_draw=True) != first
    used = make()
    draw(used)
    assert draw(used) != first  # same numpy seed, same sampler object: another order


def test_balanced_draws_every_dataset_equally_often() -> None:
    sampler = DatasetBalancedSampler(NAMES, seed=0)
    draws = list(sampler)
    assert len(draws) == len(sampler) == len(NAMES)
    counts = Counter(NAMES[i] for i in draws)
    assert sorted(counts.values()) == [37, 38, 38]


def test_balanced_uses_every_row_of_a_small_dataset_before_repeating_one() -> None:
    draws = list(DatasetBalancedSampler(NAMES, seed=0, num_samples=300))
    tiny = Counter(i for i in draws if NAMES[i] == "tiny")
    assert set(tiny) == {110, 111, 112} and max(tiny.values()) - min(tiny.values()) <= 1
    sop = Counter(i for i in draws if NAMES[i] == "sop")
    assert len(sop) == 100 and max(sop.values()) == 1  # 100 draws of 100 rows: no repeats


def test_balanced_is_seeded_per_epoch() -> None:
    sampler = DatasetBalancedSampler(NAMES, seed=0)
    first = list(sampler)
    assert first == list(DatasetBalancedSampler(NAMES, seed=0))
    assert _epoch(sampler, 1) != first
    assert list(DatasetBalancedSampler(NAMES, seed=1)) != first


def test_m_per_class_batches_hold_m_rows_of_each_class() -> None:
    sampler = MPerClassSampler(LABELS, batch_size=12, m=3, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler) == 60
    for start in range(0, len(order), 12):
        batch = order[start : start + 12]
        assert sorted(Counter(LABELS[i] for i in batch).values()) == [3, 3, 3, 3] and len(set(batch)) == 12
    few = [0, 0, 1, 1, 2, 2, 3]
    small = list(MPerClassSampler(few, batch_size=4, m=4, seed=0))
    assert len(small) == 4 and len({few[i] for i in small}) == 1  # a class of 1-2 rows repeats them
    with pytest.raises(InvalidConfigError, match="needs 20 classes"):
        MPerClassSampler(LABELS, batch_size=40, m=2)
    with pytest.raises(InvalidConfigError, match="multiple of samples_per_class"):
        MPerClassSampler(LABELS, batch_size=10, m=3)


def _unified_like() -> datasets.Dataset:
    image = Image.new("RGB", (8, 8))
    rows = datasets.Dataset.from_dict(
        {
            "image": [image] * len(NAMES),
            "label": [i // 2 for i in range(len(NAMES))],
            "dataset": NAMES,
            "role": ["train"] * len(NAMES),
        }
    )
    return rows.cast_column("image", datasets.Image())


def _loader(sampler: str, **kwargs):
    transform = make_train_transform(8, [0.5] * 3, [0.5] * 3)
    return make_train_loader(_unified_like(), transform, per_device_batch_size=16, sampler=sampler, **kwargs)


def test_loader_sampler_options() -> None:
    published = _loader("shuffle")
    assert isinstance(published.sampler.order, ShuffleSampler) and published.num_classes == 57
    batches = list(published.loader)
    assert len(batches) == published.sampler.batches_per_epoch() == len(NAMES) // 16  # incomplete batch dropped
    assert batches[0]["pixel_values"].shape == (16, 3, 8, 8) and not batches[0]["labels"].dtype.is_floating_point
    balanced = _loader("balanced")
    assert isinstance(balanced.sampler.order, DatasetBalancedSampler)
    rows = [row for batch in balanced.sampler for row, _, _ in batch]
    assert min(Counter(NAMES[row] for row in rows).values()) >= 30  # the 3-row dataset as often as the 100-row one
    pairs = _loader("m_per_class", samples_per_class=2)
    assert all(sorted(Counter(b["labels"].tolist()).values()) == [2] * 8 for b in pairs.loader)


def test_bad_sampler_and_loader_arguments_are_named() -> None:
    with pytest.raises(InvalidInputError, match="cannot sample from 0 rows"):
        ShuffleSampler(0)
    with pytest.raises(InvalidInputError, match="empty dataset"):
        DatasetBalancedSampler([])
    with pytest.raises(InvalidConfigError, match="Unknown sampler 'random'"):
        _loader("random")
    with pytest.raises(InvalidConfigError, match="0 <= process_index < num_processes"):
        _loader("shuffle", num_processes=2, process_index=2)
    with pytest.raises(InvalidConfigError, match="larger than the training set"):
        _loader("shuffle", num_processes=8)
    transform = make_train_transform(8, [0.5] * 3, [0.5] * 3)
    with pytest.raises(InvalidInputError, match=r"lacks column\(s\) \['dataset', 'image'\]"):
        make_train_loader(datasets.Dataset.from_dict({"label": [1]}), transform, per_device_batch_size=1)
    with pytest.raises(InvalidConfigError, match="per_device_batch_size"):
        make_train_loader(_unified_like(), transform, per_device_batch_size=0)
