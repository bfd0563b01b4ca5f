"""The config of a training run: YAML + command-line overrides (HfArgumentParser), defaults of the published recipe,
clear validation errors."""

from __future__ import annotations

import json

import pytest

from peft_puma import evaluate, train
from peft_puma.errors import InvalidConfigError
from peft_puma.training.arguments import DEFAULT_LR_MULTIPLIERS, DataConfig, TrainingConfig, key_types
from peft_puma.training.parsing import load_config, parse_cli_overrides

from .fixtures import write_config

BASE = {"output_dir": "out", "backbone": "some/vit", "dataset_path": "data"}


def test_defaults_are_the_published_recipe():
    config = load_config(None, BASE)
    assert (config.method, config.loss, config.epochs, config.seed) == ("puma", "curricularface", 100, 0)
    assert config.learning_rate == 1e-4 and config.weight_decay == 1e-4 and config.adam_eps == 1e-8
    assert config.adam_betas == [0.9, 0.999] and config.grad_clamp == 1.0
    assert (config.lr_step_epochs, config.lr_gamma, config.sampler) == (20, 0.5, "shuffle")
    assert config.crop_scale == [0.2, 1.0] and config.hflip_probability == 0.5 and config.eval_split == "test"
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
    tokens = ["--epochs", "3", "--puma.keep_prob=1.0", "--lr_multipliers.proxies", "100", "--push_to_hub"]
    config = load_config(path, tokens + ["--hub_model_id", "me/puma"])
    assert config.epochs == 3 and config.learning_rate == 1e-4  # YAML 1.1 reads 1e-4 as a string: coerced
    assert config.puma == {"r": 16, "keep_prob": 1.0}
    assert config.lr_multipliers == {**DEFAULT_LR_MULTIPLIERS, "proxies": 100.0}
    assert config.push_to_hub is True


def test_cli_tokens_parse_as_yaml_scalars():
    tokens = ["--epochs", "3", "--eval_ks=[1, 2]", "--resume", "--max_steps", "null", "--report_to", "[]"]
    tokens += ["--progress_bar", "false", "--datasets", "[a, b]", "--learning_rate", "-.inf", "--puma.r", "8"]
    assert parse_cli_overrides(tokens) == {
        "epochs": 3,
        "eval_ks": [1, 2],
        "resume": True,
        "max_steps": None,
        "report_to": [],
        "progress_bar": False,
        "datasets": ["a", "b"],
        "learning_rate": float("-inf"),
        "puma.r": 8,
    }


def test_hyphenated_spellings_are_accepted_and_json_values_read():
    tokens = ["--output-dir", '"o"', "--backbone", '"some/vit"', "--dataset-path=data", "--push-to-hub"]
    assert parse_cli_overrides(tokens) == {
        "output_dir": "o",
        "backbone": "some/vit",
        "dataset_path": "data",
        "push_to_hub": True,
    }


def test_dotted_keys_set_one_entry_of_a_mapping_key(tmp_path):
    config = load_config(None, ["--output_dir", "o", "--backbone", "b", "--dataset_roots.cub", str(tmp_path)])
    assert config.dataset_roots == {"cub": str(tmp_path)} and config.data.dataset_roots == {"cub": str(tmp_path)}
    config = load_config(None, {**BASE, "lr_multipliers.head": 1})
    assert config.lr_multipliers == {**DEFAULT_LR_MULTIPLIERS, "head": 1.0}
    with pytest.raises(
        InvalidConfigError, match=r"'epochs.x': only mapping keys take dotted overrides \(dataset_roots"
    ):
        load_config(None, {**BASE, "epochs.x": 1})


def test_resume_takes_true_or_a_checkpoint_path(tmp_path):
    assert load_config(None, {**BASE, "resume": True}).resume is True
    tokens = [f"--{key}={value}" for key, value in BASE.items()]
    assert load_config(None, [*tokens, "--resume", str(tmp_path)]).resume == str(tmp_path)
    assert load_config(None, [*tokens, "--resume", "false"]).resume is False


def test_unknown_keys_and_stray_tokens_name_the_accepted_keys():
    for tokens, key in (
        (["--batch", "4"], "batch"),
        (["--epoch=3"], "epoch"),
        (["--per-device-batch", "2"], "per_device_batch"),
    ):
        with pytest.raises(
            InvalidConfigError, match=rf"Unknown config key\(s\) \['{key}'\]; accepted keys: dataset_path, "
        ):
            load_config(None, tokens)
    with pytest.raises(InvalidConfigError, match="Unknown config key"):
        load_config(None, {**BASE, "data": {"dataset_path": "x"}})  # the section's keys are given flat


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
        ({"eval_split": "train"}, "eval_split must be one of test, validation; got 'train'"),
        ({"crop_scale": [0.5, 0.2]}, "crop_scale must be two fractions of the image area [low, high] with 0 < low"),
        ({"crop_scale": [0.0, 1.0]}, "got [0.0, 1.0] (the published recipe: [0.2, 1.0])"),
        ({"crop_scale": [0.2, 1.5]}, "crop_scale must be two fractions"),
        ({"crop_scale": [0.5]}, "crop_scale must be two fractions"),
        ({"crop_scale": "small"}, "'crop_scale': 'small' is not a valid list"),
        ({"hflip_probability": 1.5}, "hflip_probability must lie in [0, 1], got 1.5"),
        ({"hflip_probability": -0.1}, "hflip_probability must lie in [0, 1], got -0.1"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(overrides, message):
    with pytest.raises(InvalidConfigError) as error:
        load_config(None, {**BASE, **overrides})
    assert message in str(error.value)


def test_only_eval_split_of_the_new_keys_may_change_on_resume():
    """eval_split steers what is scored; crop_scale and hflip_probability change what is learnt."""
    from peft_puma.training.arguments import RUN_CONTROL_KEYS

    assert "eval_split" in RUN_CONTROL_KEYS
    assert not {"crop_scale", "hflip_probability"} & RUN_CONTROL_KEYS


def test_pair_loss_with_class_balanced_batches_is_accepted():
    config = load_config(None, {**BASE, "loss": "triplet", "sampler": "m_per_class", "samples_per_class": 2})
    assert config.loss == "triplet"


def test_a_config_built_in_python_is_checked_too():
    data = DataConfig(dataset_path="data")
    with pytest.raises(InvalidConfigError, match="epochs"):
        TrainingConfig(output_dir="out", backbone="some/vit", data=data, epochs="3 epochs").validate()
    with pytest.raises(InvalidConfigError, match="image_size"):
        TrainingConfig(
            output_dir="out", backbone="some/vit", data=DataConfig(dataset_path="d", image_size=0)
        ).validate()


def test_the_data_keys_are_a_section_and_flat_keys_of_the_config():
    config = load_config(None, {**BASE, "datasets": ["shop"]})
    assert isinstance(config.data, DataConfig) and config.datasets == ["shop"] == config.data.datasets
    config.uml_mini_dir = "elsewhere"
    assert config.data.uml_mini_dir == "elsewhere"
    saved = config.to_dict()  # the run file's `config`: flat, data keys first, JSON as it is
    assert list(saved) == list(key_types(TrainingConfig)) and "data" not in saved
    assert list(saved)[:6] == [
        "dataset_path",
        "dataset_roots",
        "uml_mini_dir",
        "datasets",
        "check_images",
        "image_size",
    ]
    assert json.loads(json.dumps(saved))["uml_mini_dir"] == "elsewhere"
    assert load_config(None, {"dataset_path": "d", "image_size": 32}, cls=DataConfig).to_dict()["image_size"] == 32


def test_non_finite_numbers_in_a_yaml_file_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: o\nbackbone: b\ndataset_path: d\nlearning_rate: .nan\n")
    with pytest.raises(InvalidConfigError, match="learning_rate must be a finite number, got nan"):
        load_config(path)
    with pytest.raises(InvalidConfigError, match="learning_rate must be a finite number, got -inf"):
        load_config(path, ["--learning_rate", "-.inf"])


def test_help_lists_every_key_with_its_help_and_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for key in key_types(TrainingConfig):
        assert f"--{key} [" in text, key
    assert "--output-dir" not in text  # the hyphenated spellings work but are not listed
    assert "Base learning rate (1e-4). (default: 0.0001)" in text
    assert "(default: [1, 2, 4, 8])" in text and "(default: {})" in text and "--puma.KEY VALUE" in text


def test_command_line_mistakes_are_one_line_errors_with_status_2(capsys):
    assert train.main(["--output_dir", "o", "--batch", "4"]) == train.EXIT_INVALID
    assert capsys.readouterr().err.strip().startswith("error: Unknown config key(s) ['batch']; accepted keys: ")
    assert train.main(["--config", "/nonexistent/c.yaml"]) == train.EXIT_INVALID
    assert (
        capsys.readouterr().err.strip()
        == "error: Cannot read config file '/nonexistent/c.yaml': No such file or directory."
    )
    assert evaluate.main(["--adapter", "a", "--uml_mini", "x"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: Unknown config key(s) ['uml_mini']; accepted keys: ")


def test_unreadable_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(InvalidConfigError, match="Cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(InvalidConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(InvalidConfigError, match="Expected a --key"):
        load_config(None, ["epochs", "3"])
