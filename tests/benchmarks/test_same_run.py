"""The one rule that decides whether a saved run is the run one wants (``peft_puma.training.same_run``), used by the
trainer's resume and by ``benchmarks/accuracy.py --reuse_finished``."""

from __future__ import annotations

from peft_puma.training.arguments import TrainingConfig
from peft_puma.training.same_run import GLOBAL_BATCH, Difference, RunIdentity, run_differences

SIZES = {"stripes": {"train_images": 40, "train_classes": 4, "test_images": 20, "test_classes": 2}}


def _config(**changes) -> dict:
    return {**TrainingConfig(output_dir="a").to_dict(), **changes}


def test_a_run_is_itself_whatever_only_steers_it() -> None:
    """Run-control keys (output folder, logging, data paths, ...) never count; tuples equal their JSON lists."""
    saved = RunIdentity(_config(output_dir="elsewhere", log_every_steps=7, uml_mini_dir="/other/copy"), 1, SIZES)
    wanted = RunIdentity(_config(adam_betas=(0.9, 0.999)), 1, SIZES)
    assert run_differences(saved, wanted, finished=True) == []
    assert run_differences(saved, wanted, finished=False) == []


def test_the_length_counts_for_a_finished_run_only() -> None:
    saved, wanted = RunIdentity(_config(epochs=4)), RunIdentity(_config(epochs=8))
    assert run_differences(saved, wanted, finished=False) == []  # a checkpoint may be resumed towards another end
    assert run_differences(saved, wanted, finished=True) == [Difference("epochs", 4, 8)]


def test_the_batch_is_compared_as_the_global_batch() -> None:
    four_gpus = RunIdentity(_config(per_device_batch_size=45), num_processes=4)
    assert run_differences(four_gpus, RunIdentity(_config(per_device_batch_size=180)), finished=True) == []
    assert run_differences(four_gpus, RunIdentity(_config(per_device_batch_size=45)), finished=True) == [
        Difference(GLOBAL_BATCH, 180, 45)
    ]


def test_recipe_keys_and_mapping_entries_are_named() -> None:
    saved = RunIdentity(_config(learning_rate=0.123, puma={"keep_prob": 0.25}))
    wanted = RunIdentity(_config(puma={"keep_prob": 0.5}))
    assert run_differences(saved, wanted, finished=False) == [
        Difference("learning_rate", 0.123, TrainingConfig().learning_rate),
        Difference("puma.keep_prob", 0.25, 0.5),
    ]


def test_data_sizes_are_compared_where_both_sides_know_them() -> None:
    other = {"other": {"train_images": 9}}
    assert run_differences(RunIdentity(_config(), 1, None), RunIdentity(_config(), 1, SIZES), finished=True) == []
    assert run_differences(RunIdentity(_config(), 1, other), RunIdentity(_config(), 1, SIZES), finished=True) == [
        Difference("data_sizes.other", {"train_images": 9}, None),
        Difference("data_sizes.stripes", None, SIZES["stripes"]),
    ]
