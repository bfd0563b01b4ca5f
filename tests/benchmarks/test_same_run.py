"""The one rule that decides whether a saved run is the run one wants (``peft_puma.runs.same_run``), used by the
trainer's resume and by ``benchmarks/accuracy.py --reuse_finished``."""

from __future__ import annotations

from peft_puma.runs.same_run import (
    BACKBONE_WEIGHTS,
    GLOBAL_BATCH,
    Difference,
    RunIdentity,
    run_differences,
)
from peft_puma.training.arguments import TrainingConfig

ROLES = TrainingConfig.key_roles()

SIZES = {"stripes": {"train_images": 40, "train_classes": 4, "test_images": 20, "test_classes": 2}}


def _config(**changes) -> dict:
    return {**TrainingConfig(output_dir="a").to_dict(), **changes}


def test_a_run_is_itself_whatever_only_steers_it() -> None:
    """Run-control keys (output folder, logging, data paths, ...) never count; tuples equal their JSON lists."""
    saved = RunIdentity(_config(output_dir="elsewhere", log_every_steps=7, uml_mini_dir="/other/copy"), 1, SIZES)
    wanted = RunIdentity(_config(adam_betas=(0.9, 0.999)), 1, SIZES)
    assert run_differences(saved, wanted, ROLES, finished=True) == []
    assert run_differences(saved, wanted, ROLES, finished=False) == []


def test_the_length_counts_for_a_finished_run_only() -> None:
    saved, wanted = RunIdentity(_config(epochs=4)), RunIdentity(_config(epochs=8))
    assert (
        run_differences(saved, wanted, ROLES, finished=False) == []
    )  # a checkpoint may be resumed towards another end
    assert run_differences(saved, wanted, ROLES, finished=True) == [Difference("epochs", 4, 8)]


def test_the_batch_is_compared_as_the_global_batch() -> None:
    four_gpus = RunIdentity(_config(per_device_batch_size=45), num_processes=4)
    assert run_differences(four_gpus, RunIdentity(_config(per_device_batch_size=180)), ROLES, finished=True) == []
    assert run_differences(four_gpus, RunIdentity(_config(per_device_batch_size=45)), ROLES, finished=True) == [
        Difference(GLOBAL_BATCH, 180, 45)
    ]


def test_recipe_keys_and_mapping_entries_are_named() -> None:
    saved = RunIdentity(_config(learning_rate=0.123, puma={"keep_prob": 0.25}))
    wanted = RunIdentity(_config(puma={"keep_prob": 0.5}))
    assert run_differences(saved, wanted, ROLES, finished=False) == [
        Difference("learning_rate", 0.123, TrainingConfig().learning_rate),
        Difference("puma.keep_prob", 0.25, 0.5),
    ]


def test_data_sizes_are_compared_where_both_sides_know_them() -> None:
    other = {"other": {"train_images": 9}}
    assert (
        run_differences(RunIdentity(_config(), 1, None), RunIdentity(_config(), 1, SIZES), ROLES, finished=True) == []
    )
    assert run_differences(
        RunIdentity(_config(), 1, other), RunIdentity(_config(), 1, SIZES), ROLES, finished=True
    ) == [
        Difference("data_sizes.other", {"train_images": 9}, None),
        Difference("data_sizes.stripes", None, SIZES["stripes"]),
    ]


def test_augmentation_keys_make_another_run_and_the_scored_split_counts_once_finished() -> None:
    saved = RunIdentity(_config(crop_scale=[0.5, 1.0], hflip_probability=0.0))
    assert run_differences(saved, RunIdentity(_config()), ROLES, finished=False) == [
        Difference("crop_scale", [0.5, 1.0], [0.2, 1.0]),
        Difference("hflip_probability", 0.0, 0.5),
    ]
    scored_on_test, wanted = RunIdentity(_config(eval_split="test")), RunIdentity(_config(eval_split="validation"))
    assert run_differences(scored_on_test, wanted, ROLES, finished=False) == []  # a checkpoint has no results yet
    assert run_differences(scored_on_test, wanted, ROLES, finished=True) == [
        Difference("eval_split", "test", "validation")
    ]


def test_a_run_saved_before_a_key_existed_had_its_old_behaviour() -> None:
    """Checkpoints and run files written before crop_scale, hflip_probability and eval_split ran the published recipe
    and scored the test split: they stay the same run as today's defaults, and another run than other values."""
    older = {key: value for key, value in _config().items() if key not in ROLES.before}
    assert run_differences(RunIdentity(older), RunIdentity(_config()), ROLES, finished=True) == []
    assert run_differences(RunIdentity(older), RunIdentity(_config(hflip_probability=1.0)), ROLES, finished=False) == [
        Difference("hflip_probability", 0.5, 1.0)
    ]


def test_backbone_weights_are_compared_where_both_sides_know_them() -> None:
    """The config names the backbone by its folder or Hub id; the fingerprint tells two weights under one name apart."""
    before, after = "sha256:" + "0" * 64, "sha256:" + "1" * 64
    saved = RunIdentity(_config(), backbone_fingerprint=before)
    assert run_differences(saved, RunIdentity(_config(), backbone_fingerprint=before), ROLES, finished=True) == []
    assert (
        run_differences(saved, RunIdentity(_config()), ROLES, finished=True) == []
    )  # runs saved before it was recorded
    assert run_differences(saved, RunIdentity(_config(), backbone_fingerprint=after), ROLES, finished=False) == [
        Difference(BACKBONE_WEIGHTS, before, after)
    ]
