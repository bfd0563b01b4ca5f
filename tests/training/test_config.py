"""The config of a training run: YAML + command-line overrides (HfArgumentParser), defaults of the published recipe,
clear validation errors."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from peft_puma import evaluate, train
from peft_puma.config.keys import key_types
from peft_puma.config.parsing import load_keys, parse_cli_overrides
from peft_puma.data.builder import build_unified_dataset
from peft_puma.data.config import DataConfig
from peft_puma.data.specs.base import ParseOptions
from peft_puma.errors import InvalidConfigError
from peft_puma.training.arguments import (
    ADAPTER_FIELDS,
    DEFAULT_LR_MULTIPLIERS,
    PROMPT_FIELDS,
    TrainingConfig,
    load_config,
    puma_fields,
)
from peft_puma.tuners.puma.config import PUMAConfig

from .fixtures import write_config

BASE = {"output_dir": "out", "backbone": "some/vit", "dataset_path": "data"}
BASE_TOKENS = ["--output_dir", "out", "--backbone", "some/vit", "--dataset_path", "data"]


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
    assert parse_cli_overrides(tokens, TrainingConfig) == {
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
    assert parse_cli_overrides(tokens, TrainingConfig) == {
        "output_dir": "o",
        "backbone": "some/vit",
        "dataset_path": "data",
        "push_to_hub": True,
    }


def test_dotted_keys_set_one_entry_of_a_mapping_key(tmp_path):
    config = load_config(None, ["--output_dir", "o", "--backbone", "b", "--dataset_roots.cub", str(tmp_path)])
    assert config.dataset_roots == {"cub": str(tmp_path)}
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
    for tokens, key, guess in (
        (["--batch", "4"], "--batch", "--per_device_batch_size"),
        (["--epoch=3"], "--epoch", "--epochs"),
        (["--per-device-batch", "2"], "--per-device-batch", "--per_device_batch_size"),
    ):
        with pytest.raises(
            InvalidConfigError,
            match=rf"Unknown config key\(s\) \['{key}'\] \(did you mean {guess}\?\); accepted keys: dataset_path, ",
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
        ({"torch_compile": True, "torch_compile_backend": "tensorrt9"}, "torch_compile_backend must be one of"),
        ({"torch_compile_mode": "fastest"}, "torch_compile_mode must be one of default, reduce-overhead"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(overrides, message):
    with pytest.raises(InvalidConfigError) as error:
        load_config(None, {**BASE, **overrides})
    assert message in str(error.value)


def test_only_eval_split_of_the_new_keys_may_change_on_resume():
    """eval_split steers what is scored; crop_scale and hflip_probability change what is learnt."""
    roles = TrainingConfig.key_roles()
    assert "eval_split" in roles.result  # may change on resume, counts for a finished run
    assert not {"crop_scale", "hflip_probability"} & (roles.control | roles.result)


def test_pair_loss_with_class_balanced_batches_is_accepted():
    config = load_config(None, {**BASE, "loss": "triplet", "sampler": "m_per_class", "samples_per_class": 2})
    assert config.loss == "triplet"


def test_a_config_built_in_python_is_checked_too():
    with pytest.raises(InvalidConfigError, match="epochs"):
        TrainingConfig(output_dir="out", backbone="some/vit", dataset_path="data", epochs="3 epochs").validate()
    with pytest.raises(InvalidConfigError, match="image_size"):
        TrainingConfig(output_dir="out", backbone="some/vit", dataset_path="d", image_size=0).validate()


def test_the_training_config_extends_the_data_keys_flat():
    config = load_config(None, {**BASE, "datasets": ["shop"]})
    assert isinstance(config, DataConfig) and config.datasets == ["shop"]
    config.uml_mini_dir = "elsewhere"
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
    assert load_keys(None, {"dataset_path": "d", "image_size": 32}, DataConfig).validate().to_dict()["image_size"] == 32


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
        assert f"--{key} " in text, key
    assert "--output-dir" not in text  # the hyphenated spellings work but are not listed
    assert "--num_train_epochs INT" not in text  # nor the aliases (the epilog names a few; docs/training.md all)
    assert "--learning_rate FLOAT Base learning rate; each parameter group's is this times its multiplier. " in text
    assert "(default: 0.0001)" in text and "--eval_ks INT ... k of Recall@k" in text
    assert "(default: [1, 2, 4, 8])" in text and "(default: {})" in text and "--puma.KEY VALUE" in text
    for name in ("keep_prob", "r", "num_prompts", "scale", "embedding_size"):  # every PUMA field, typed, with help
        assert f"--puma.{name} " in text, name
    assert "--puma.keep_prob FLOAT Bernoulli keep probability p" in text and "(default: 0.5)" in text
    assert "Default: 0.5" not in text  # PUMAConfig's own sentence is left out: the default is said once


def test_every_key_declares_its_role_in_a_saved_run():
    """A key added without a role would silently join (or leave) the run identity: key() requires one."""
    roles = TrainingConfig.key_roles()
    assert {"output_dir", "resume", "uml_mini_dir", "eval_ks", "activation_checkpointing"} <= roles.control
    assert roles.result == {"epochs", "max_steps", "eval_split"}
    assert roles.per_process == {"per_device_batch_size"}
    assert dict(roles.before) == {
        "crop_scale": [0.2, 1.0],
        "hflip_probability": 0.5,
        "eval_split": "test",
        # a collection's columns and class split: every run before them read the row schema's columns, unsplit
        "image_column": "image",
        "label_column": "label",
        "domain_column": None,
        "split_fractions": [0.4, 0.1, 0.5],
        "split_seed": 0,
    }
    assert not {"learning_rate", "puma", "method", "seed", "crop_scale"} & (roles.control | roles.result)
    assert all("role" in field.metadata for field in dataclasses.fields(TrainingConfig))


def test_a_preset_refuses_a_value_that_contradicts_it_naming_both():
    with pytest.raises(
        InvalidConfigError,
        match=r"method 'static_adapter' fixes puma.keep_prob to 1.0, but the config"
        r" sets puma.keep_prob: 0.5",
    ):
        load_config(None, ["--method", "static_adapter", "--puma.keep_prob", "0.5", *BASE_TOKENS])
    with pytest.raises(InvalidConfigError, match=r"method 'lora' fixes puma.use_adapters to False"):
        load_config(None, {**BASE, "method": "lora", "puma": {"use_adapters": True}})
    agreeing = load_config(None, {**BASE, "method": "static_adapter", "puma": {"keep_prob": 1, "r": 8}})
    assert agreeing.puma_config().keep_prob == 1.0 and agreeing.puma_config().r == 8
    with pytest.raises(InvalidConfigError, match="PUMA preset 'single_prompt' fixes num_prompts=1, got num_prompts=4"):
        PUMAConfig.from_preset("single_prompt", num_prompts=4)


def test_a_puma_field_the_method_does_not_use_is_refused_naming_both():
    """The newcomer's --method lora --puma.keep_prob 0.3: LoRA has no PUMA adapters, so the value would do nothing."""
    with pytest.raises(InvalidConfigError) as error:
        load_config(None, ["--method", "lora", "--puma.keep_prob", "0.3", *BASE_TOKENS])
    assert str(error.value).startswith(
        "method 'lora' does not use puma.keep_prob (it trains no PUMA adapters: LoRA (PEFT) on the backbone's linears"
    )
    assert "Drop puma.keep_prob, or choose a method that uses it (puma, stochastic_adapter, static_adapter" in str(
        error.value
    )
    for method, entry in (("linear", "r"), ("conditional_prompt", "scale"), ("static_adapter", "num_prompts")):
        with pytest.raises(InvalidConfigError, match=f"method '{method}' does not use puma.{entry} "):
            load_config(None, {**BASE, "method": method, "puma": {entry: 2}})
    with pytest.raises(InvalidConfigError, match=r"does not use puma.r \(puma.use_adapters is false\)"):
        load_config(None, {**BASE, "puma": {"use_adapters": False, "r": 8}})
    # what a method does use stays accepted: the head's size everywhere, r for LoRA's automatic rank
    assert load_config(None, {**BASE, "method": "full_finetune", "puma": {"embedding_size": 64}})
    assert load_config(None, {**BASE, "method": "lora", "puma": {"r": 8, "num_prompts": 4}})
    with pytest.raises(InvalidConfigError, match="lora_r is 4, so it no longer sizes LoRA's rank either"):
        load_config(None, {**BASE, "method": "lora", "lora_r": 4, "puma": {"r": 8}})


def test_every_puma_field_is_known_to_shape_a_part_or_every_model():
    """A new PUMAConfig field must be placed: adapters, prompt pool, or every method (then it is never refused)."""
    every_model = {"use_adapters", "use_prompts", "embedding_size", "backbone_family"}
    assert set(puma_fields()) == set(ADAPTER_FIELDS) | set(PROMPT_FIELDS) | every_model


def test_for_method_keeps_the_entries_a_method_uses_as_the_benchmarks_need():
    config = load_config(None, {**BASE, "puma": {"r": 32, "keep_prob": 0.75, "num_prompts": 8}})
    assert config.for_method("lora").validate().puma == {"r": 32, "num_prompts": 8}  # they size LoRA's rank
    assert config.for_method("linear").validate().puma == {}
    assert config.for_method("static_adapter").validate().puma == {"r": 32}
    assert config.for_method("single_prompt").validate().puma == {}
    assert config.for_method("puma").validate().puma == config.puma


def test_one_image_check_default_everywhere():
    """full finds a truncated file before training; the Python builders and the config keys agree on it."""
    builder_default = inspect.signature(build_unified_dataset).parameters["check_images"].default
    assert DataConfig().check_images == ParseOptions().check_images == builder_default == "full"


def test_puma_entries_are_typed_by_pumaconfig():
    config = load_config(None, ["--puma.keep_prob", "1", "--puma.r", "16.0", *BASE_TOKENS])
    assert config.puma_entries() == {"keep_prob": 1.0, "r": 16}
    with pytest.raises(InvalidConfigError, match="Unknown PUMAConfig fields \\['rank'\\] in puma; accepted fields: "):
        load_config(None, ["--puma.rank", "16", *BASE_TOKENS])
    with pytest.raises(InvalidConfigError, match="'puma.r': 'big' is not a valid int"):
        load_config(None, ["--puma.r", "big", *BASE_TOKENS])


def test_command_line_mistakes_are_one_line_errors_with_status_2(capsys):
    assert train.main(["--output_dir", "o", "--batch", "4"]) == train.EXIT_INVALID
    assert capsys.readouterr().err.strip().startswith("error: Unknown config key(s) ['--batch'] (did you mean ")
    assert train.main(["--config", "/nonexistent/c.yaml"]) == train.EXIT_INVALID
    assert (
        capsys.readouterr().err.strip()
        == "error: Cannot read config file '/nonexistent/c.yaml': No such file or directory."
    )
    assert evaluate.main(["--adapter", "a", "--uml_mini", "x"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: Unknown config key(s) ['--uml_mini'] (did you mean ")


def test_unreadable_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(InvalidConfigError, match="Cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(InvalidConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(InvalidConfigError, match="Expected a --key"):
        load_config(None, ["epochs", "3"])
