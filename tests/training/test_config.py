"""The training config: YAML + command-line overrides, defaults of the published recipe, clear validation errors."""

from __future__ import annotations

import pytest

from peft_puma.errors import InvalidConfigError
from peft_puma.training.config import DEFAULT_LR_MULTIPLIERS, TrainingConfig
from peft_puma.training.parsing import load_config, parse_cli_overrides

from .fixtures import write_config

BASE = {"output_dir": "out", "backbone": "some/vit", "dataset_path": "data"}


def test_defaults_are_the_published_recipe():
    config = load_config(None, BASE)
    assert (config.method, config.loss, config.epochs, config.seed) == ("puma", "curricularface", 100, 0)
    assert config.learning_rate == 1e-4 and config.weight_decay == 1e-4 and config.adam_eps == 1e-8
    assert config.adam_betas == [0.9, 0.999] and config.grad_clamp == 1.0
    assert (config.lr_step_epochs, config.lr_gamma, config.sampler) == (20, 0.5, "shuffle")
    assert config.lr_multipliers == {
        "prompts": 10,
        "adapters": 10,
        "head": 10,
        "proxies": 1e4,
        "lora": 10,
        "backbone": 1,
    }


def test_yaml_file_then_command_line_overrides(tmp_path):
    path = write_config(str(tmp_path / "c.yaml"), {**BASE, "epochs": 7, "learning_rate": "1e-4", "puma": {"r": 16}})
    tokens = ["--epochs", "3", "--puma.keep_prob=1.0", "--lr_multipliers.proxies", "100", "--push-to-hub"]
    config = load_config(path, tokens + ["--hub_model_id", "me/puma"])
    assert config.epochs == 3 and config.learning_rate == 1e-4  # YAML 1.1 reads 1e-4 as a string: coerced
    assert config.puma == {"r": 16, "keep_prob": 1.0}
    assert config.lr_multipliers == {**DEFAULT_LR_MULTIPLIERS, "proxies": 100.0}
    assert config.push_to_hub is True


def test_cli_tokens_parse_as_yaml_scalars():
    assert parse_cli_overrides(["--a", "3", "--b=[1, 2]", "--c", "--d", "null", "--e-f", "x"]) == {
        "a": 3,
        "b": [1, 2],
        "c": True,
        "d": None,
        "e_f": "x",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": "hinge"}, "Unknown loss 'hinge'"),
        (
            {"dataset_path": None, "dataset_roots": {"cub": "/x", "imagenet": "/y"}},
            "unknown dataset name(s) ['imagenet']",
        ),
        ({"loss": "triplet"}, "at least 2 samples"),
        ({"loss": "multi_similarity", "sampler": "m_per_class", "samples_per_class": 1}, "samples_per_class >= 2"),
        ({"method": "adaptformer"}, "Unknown method 'adaptformer'"),
        ({"epochs": "many"}, "'epochs': 'many' is not a valid int"),
        ({"batch": 4}, "Unknown config key(s) ['batch']"),
        ({"uml_mini_dir": "x"}, "exactly one data source"),
        ({"output_dir": None}, "output_dir is required"),
        ({"sampler": "weighted"}, "sampler must be one of"),
        ({"lr_multipliers": {"decoder": 2.0}}, "unknown group(s) ['decoder']"),
        ({"puma": {"keep_prob": 0.0}}, "keep_prob"),
        ({"puma": {"num_adapters": 3}}, "Unknown PUMAConfig fields"),
        ({"per_device_batch_size": 0}, "per_device_batch_size must be positive"),
        ({"grad_clamp": -1.0}, "grad_clamp must be positive"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
        ({"push_to_hub": True}, "hub_model_id"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(overrides, message):
    with pytest.raises(InvalidConfigError) as error:
        load_config(None, {**BASE, **overrides})
    assert message in str(error.value)


def test_pair_loss_with_class_balanced_batches_is_accepted():
    config = load_config(None, {**BASE, "loss": "triplet", "sampler": "m_per_class", "samples_per_class": 2})
    assert config.loss == "triplet"


def test_a_config_built_in_python_is_checked_too():
    with pytest.raises(InvalidConfigError, match="epochs"):
        TrainingConfig(**BASE, epochs="3 epochs").validate()


def test_unreadable_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(InvalidConfigError, match="Cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(InvalidConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(InvalidConfigError, match="Expected a --key"):
        load_config(None, ["epochs", "3"])
