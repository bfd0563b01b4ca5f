"""Samplers of method.md section 6: the published plain shuffle and the dataset-balanced option."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest
from PIL import Image

from peft_puma.data import DatasetBalancedSampler, ShuffleSampler, make_eval_transform, make_train_loader
from peft_puma.errors import InvalidConfigError, InvalidInputError

# A union as imbalanced as the paper's: SOP-like 100 rows, CUB-like 10, a tiny dataset of 3.
NAMES = ["sop"] * 100 + ["cub"] * 10 + ["tiny"] * 3


def test_shuffle_is_a_permutation_that_changes_with_the_epoch() -> None:
    sampler = ShuffleSampler(50, seed=0)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(50))
    assert list(ShuffleSampler(50, seed=1)) != first


def test_shuffle_shards_are_disjoint_equal_and_cover_everything() -> None:
    shards = [list(ShuffleSampler(10, seed=0, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4] == [len(ShuffleSampler(10, num_replicas=3, rank=r)) for r in range(3)]
    rows = [i for s in shards for i in s]
    assert set(rows) == set(range(10)) and len(rows) - len(set(rows)) == 2  # two padded rows wrap around


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
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(DatasetBalancedSampler(NAMES, seed=1)) != first


def test_balanced_shards_split_one_epoch() -> None:
    full = list(DatasetBalancedSampler(NAMES, seed=0, num_samples=12))
    shards = [list(DatasetBalancedSampler(NAMES, seed=0, num_samples=12, num_replicas=2, rank=r)) for r in range(2)]
    assert shards[0] == full[0::2] and shards[1] == full[1::2]


def _unified_like() -> datasets.Dataset:
    image = Image.new("RGB", (8, 8))
    rows = datasets.Dataset.from_dict(
        {
            "image": [image] * len(NAMES),
            "label": list(range(len(NAMES))),
            "dataset": NAMES,
            "role": ["train"] * len(NAMES),
        }
    )
    return rows.cast_column("image", datasets.Image())


def test_loader_balanced_option_and_published_default() -> None:
    train = _unified_like().with_transform(make_eval_transform(8, [0.5] * 3, [0.5] * 3))
    balanced = make_train_loader(train, batch_size=16, balanced=True, seed=0)
    assert isinstance(balanced.sampler, DatasetBalancedSampler)
    batches = list(balanced)
    assert len(batches) == len(NAMES) // 16  # drop_last
    assert batches[0]["pixel_values"].shape == (16, 3, 8, 8) and batches[0]["label"].dtype.is_floating_point is False
    counts = Counter(name for batch in batches for name in batch["dataset"])
    assert min(counts.values()) >= 30  # the 3-row dataset is drawn as often as the 100-row one
    published = make_train_loader(train, batch_size=16, seed=0)
    assert isinstance(published.sampler, ShuffleSampler)
    assert Counter(name for batch in published for name in batch["dataset"])["tiny"] <= 3


def test_bad_sampler_arguments_are_named() -> None:
    with pytest.raises(InvalidConfigError, match="0 <= rank < num_replicas"):
        ShuffleSampler(10, num_replicas=2, rank=2)
    with pytest.raises(InvalidInputError, match="cannot sample from 0 rows"):
        ShuffleSampler(0)
    with pytest.raises(InvalidInputError, match="no 'dataset' column"):
        DatasetBalancedSampler.from_dataset(datasets.Dataset.from_dict({"label": [1]}))
    with pytest.raises(InvalidConfigError, match="batch_size"):
        make_train_loader(_unified_like(), batch_size=0)
