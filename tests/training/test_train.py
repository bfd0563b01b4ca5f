"""A whole tiny training run: the loss falls, the adapter and results are saved, the saved adapter reloads exactly."""

from __future__ import annotations

import json
import os

import pytest
import torch

from peft_puma.backbones.loading import load_backbone
from peft_puma.runs.checkpoints import complete_checkpoints
from peft_puma.runs.run_file import read_run_file
from peft_puma.runs.saving import load_trained
from peft_puma.training import NonFiniteLossError, load_config, train

from .conftest import expected_results_file
from .fault_runner import nan_loss_at_step


def test_training_loss_falls(finished_run):
    _, result = finished_run
    losses = result.losses
    assert len(losses) == result.global_step == 32  # 66 rows // 8 = 8 steps per epoch, 4 epochs
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:8]) / 8


def test_outputs_are_the_adapter_results_and_logs(finished_run):
    config, result = finished_run
    files = set(os.listdir(config.output_dir))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "results.json"} <= files
    with open(os.path.join(config.output_dir, "results.json")) as handle:
        saved = json.load(handle)
    run = read_run_file(config.output_dir)
    assert saved == expected_results_file(config, result)
    assert set(saved) == {
        "unified",
        "per_dataset",
        "harmonic",
        "split",
        "data_source",
        "backbone_fingerprint",
        "training_seed",
        "commit",
    }
    assert len(run.backbone_fingerprint) > 8
    assert list(saved["per_dataset"]) == ["stripes", "colours", "shop"]
    card = open(os.path.join(config.output_dir, "README.md")).read()
    assert "| stripes | colours | shop | Unified | Harmonic |" in card and "final epoch (test split)" in card
    assert "[retrieval_examples.png](retrieval_examples.png)" in card


def test_a_run_leaves_its_retrieval_examples_sheet(finished_run):
    from PIL import Image

    from peft_puma.evaluation.grid import DEFAULT_THUMBNAIL, grid_size

    config, _ = finished_run
    with Image.open(os.path.join(config.output_dir, "retrieval_examples.png")) as sheet:
        assert sheet.size == grid_size(6, 6, DEFAULT_THUMBNAIL)  # 2 seeded queries per dataset, each with its top 5
    assert os.listdir(os.path.join(config.output_dir, "logs", "peft_puma"))  # TensorBoard events
    assert [step for step, _ in complete_checkpoints(config.output_dir)] == [28, 32]  # save_total_limit 2


def test_checkpoints_hold_only_the_trainable_state(finished_run):
    config, _ = finished_run
    from safetensors.torch import load_file

    _, newest = complete_checkpoints(config.output_dir)[-1]
    saved = load_file(os.path.join(newest, "model.safetensors"))
    assert all("puma_" in key or key.startswith("loss.") for key in saved)
    assert {"loss.proxies", "loss.t"} <= set(saved)  # CurricularFace proxies and its curriculum statistic


def test_reloaded_adapter_gives_the_same_embeddings(finished_run, tiny_assets):
    config, result = finished_run
    pixels = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    backbone, _ = load_backbone(tiny_assets["backbone"])
    reloaded = load_trained(backbone, config.output_dir)
    with torch.no_grad():
        expected = result.model(pixel_values=pixels).embeddings
        actual = reloaded(pixel_values=pixels).embeddings
    torch.testing.assert_close(actual, expected)
    with torch.no_grad(), result.model.disable_adapter():
        frozen = result.model(pixel_values=pixels).embeddings
    assert not torch.allclose(frozen[:, :16], expected, atol=1e-3)  # it did learn something


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_values, monkeypatch):
    config = load_config(None, tiny_values)
    with nan_loss_at_step(monkeypatch, 7), pytest.raises(NonFiniteLossError) as error:
        train(config)
    message = str(error.value)
    assert "nan at step 7" in message and "checkpoint-4" in message and "--resume" in message
    assert [step for step, _ in complete_checkpoints(config.output_dir)] == [4]
    assert not os.path.exists(os.path.join(config.output_dir, "adapter_model.safetensors"))


def test_starting_over_an_existing_run_needs_resume(tiny_values, monkeypatch):
    with nan_loss_at_step(monkeypatch, 5), pytest.raises(NonFiniteLossError):
        train(load_config(None, tiny_values))
    from peft_puma.errors import IncompatibleCheckpointError

    with pytest.raises(IncompatibleCheckpointError, match="pass --resume"):
        train(load_config(None, tiny_values))
    with pytest.raises(IncompatibleCheckpointError, match="other settings.*seed"):
        train(load_config(None, {**tiny_values, "resume": True, "seed": 1}))


def test_resuming_over_other_backbone_weights_under_the_same_name_is_refused(tiny_values, tmp_path, monkeypatch):
    """A backbone folder pretrained again keeps its name; the fingerprint of its weights tells the two apart."""
    import shutil

    from transformers import ViTModel

    from peft_puma.backbones.fingerprint import fingerprint_of
    from peft_puma.errors import IncompatibleCheckpointError
    from peft_puma.runs.run_file import read_run_file

    backbone = str(tmp_path / "backbone")
    shutil.copytree(tiny_values["backbone"], backbone)
    values = {**tiny_values, "backbone": backbone}
    with nan_loss_at_step(monkeypatch, 5), pytest.raises(NonFiniteLossError):
        train(load_config(None, values))
    assert read_run_file(values["output_dir"]).backbone_fingerprint == fingerprint_of(backbone)
    model = ViTModel.from_pretrained(backbone, add_pooling_layer=False)
    with torch.no_grad():
        model.layernorm.bias.add_(0.01)
    model.save_pretrained(backbone)
    with pytest.raises(IncompatibleCheckpointError, match="other settings.*backbone weights"):
        train(load_config(None, {**values, "resume": True}))


def test_unknown_dataset_in_the_selection_is_refused(tiny_values):
    from peft_puma.errors import InvalidConfigError

    with pytest.raises(InvalidConfigError, match=r"Unknown dataset\(s\) \['cub'\].*'stripes', 'colours', 'shop'"):
        train(load_config(None, {**tiny_values, "datasets": ["stripes", "cub"]}))


@pytest.mark.parametrize(
    ("overrides", "groups"),
    [
        (
            {"loss": "multi_similarity", "sampler": "m_per_class", "samples_per_class": 2},
            {"adapters", "prompts", "head"},
        ),
        (  # with its rank given, LoRA uses only the head's puma field (the others would be refused as unused)
            {"sampler": "balanced", "method": "lora", "lora_r": 2, "puma": {"embedding_size": 16}},
            {"lora", "head", "proxies"},
        ),
    ],
)
def test_other_samplers_losses_and_methods_run(tiny_values, overrides, groups):
    result = train(load_config(None, {**tiny_values, **overrides, "max_steps": 3, "save_every_steps": 0}))
    assert result.global_step == 3 and all(map(torch.isfinite, map(torch.tensor, result.losses)))
    with open(os.path.join(tiny_values["output_dir"], "train_log.jsonl")) as handle:
        logged = {key.split("/")[1] for line in handle for key in json.loads(line) if key.startswith("lr/")}
    assert logged == groups


def test_evaluation_every_n_epochs_is_logged_with_its_split_and_epoch(finished_run):
    """Without a validation split, every evaluation scores the test split, under the `eval/` keys."""
    config, _ = finished_run
    with open(os.path.join(config.output_dir, "train_log.jsonl")) as handle:
        evaluated = [entry for entry in map(json.loads, handle) if "eval/unified/recall@1" in entry]
    # eval_every_epochs 2 of 4 epochs (8 steps each), then the final evaluation
    assert [(entry["split"], entry["epoch"], entry["step"]) for entry in evaluated] == [
        ("test", 2, 16),
        ("test", 4, 32),
    ]
    assert all({"eval/stripes/recall@1", "eval/shop/recall@1", "eval/harmonic/recall@1"} <= set(e) for e in evaluated)


def test_resume_refuses_a_checkpoint_of_another_process_count(tiny_values, monkeypatch):
    with nan_loss_at_step(monkeypatch, 5), pytest.raises(NonFiniteLossError):
        train(load_config(None, tiny_values))
    ((_, checkpoint),) = complete_checkpoints(tiny_values["output_dir"])
    path = os.path.join(checkpoint, "trainer_state.json")
    with open(path) as handle:
        state = json.load(handle)
    with open(path, "w") as handle:
        json.dump({**state, "num_processes": 2}, handle)
    from peft_puma.errors import IncompatibleCheckpointError

    with pytest.raises(IncompatibleCheckpointError, match="written by 2 process"):
        train(load_config(None, {**tiny_values, "resume": True}))


def test_activation_checkpointing_trains_the_same_steps(tiny_values, tmp_path):
    """Recomputing the blocks in backward (gates replayed) gives the same losses as keeping the activations."""
    runs = {}
    for switch in (False, True):
        values = {**tiny_values, "output_dir": str(tmp_path / f"run_{switch}"), "max_steps": 3, "save_every_steps": 0}
        runs[switch] = train(load_config(None, {**values, "activation_checkpointing": switch}))
    assert runs[True].global_step == 3
    torch.testing.assert_close(torch.tensor(runs[True].losses), torch.tensor(runs[False].losses), rtol=1e-5, atol=1e-6)
