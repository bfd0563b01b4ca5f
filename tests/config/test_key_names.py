"""The names a config accepts: its keys, their aliases (transformers' TrainingArguments names for the same thing), the
names refused because they mean something else here, and a did-you-mean for the rest; in files and on the command line
alike. Also how a list key takes its items on the command line."""

from __future__ import annotations

import pytest

from peft_puma import evaluate, train
from peft_puma.config.keys import did_you_mean, key_aliases, refused_names
from peft_puma.config.parsing import parse_cli_overrides
from peft_puma.errors import InvalidConfigError
from peft_puma.training.arguments import TrainingConfig, load_config

BASE = {"output_dir": "out", "backbone": "some/vit", "dataset_path": "data"}
BASE_TOKENS = ["--output_dir", "out", "--backbone", "some/vit", "--dataset_path", "data"]

# TrainingArguments name -> (our key, the value given, the value it sets)
SAME_MEANING = {
    "num_train_epochs": ("epochs", 3, 3),
    "per_device_train_batch_size": ("per_device_batch_size", 16, 16),
    "per_device_eval_batch_size": ("eval_batch_size", 64, 64),
    "adam_epsilon": ("adam_eps", 1e-6, 1e-6),
    "logging_steps": ("log_every_steps", 5, 5),
    "save_steps": ("save_every_steps", 50, 50),
    "dataloader_num_workers": ("num_workers", 2, 2),
    "gradient_checkpointing": ("activation_checkpointing", True, True),
    "bf16": ("mixed_precision", True, "bf16"),
    "fp16": ("mixed_precision", True, "fp16"),
    "disable_tqdm": ("progress_bar", True, False),
}


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: o\nbackbone: b\ndataset_path: d\n" + text)
    return str(path)


@pytest.mark.parametrize("alias", SAME_MEANING)
def test_training_arguments_names_set_our_key_in_files_and_on_the_command_line(alias, tmp_path):
    key, given, expected = SAME_MEANING[alias]
    token = "true" if given is True else str(given)
    from_command_line = load_config(None, [*BASE_TOKENS, f"--{alias}", token])
    from_file = load_config(_write(tmp_path, f"{alias}: {token}\n"))
    assert getattr(from_command_line, key) == expected and getattr(from_file, key) == expected


def test_a_flag_alias_alone_is_true_and_takes_only_true_or_false():
    assert load_config(None, [*BASE_TOKENS, "--bf16"]).mixed_precision == "bf16"
    assert load_config(None, [*BASE_TOKENS, "--bf16", "false"]).mixed_precision == "no"
    with pytest.raises(InvalidConfigError, match="bf16 takes true or false, got 'yes please'"):
        load_config(None, [*BASE_TOKENS, "--bf16", "yes please"])


def test_the_command_line_alias_replaces_the_files_key(tmp_path):
    config = load_config(_write(tmp_path, "epochs: 7\n"), ["--num_train_epochs", "3"])
    assert config.epochs == 3


def test_a_key_given_under_two_names_in_one_place_is_refused(tmp_path):
    with pytest.raises(InvalidConfigError, match="epochs is given twice on the command line, as --epochs and as"):
        load_config(None, [*BASE_TOKENS, "--epochs", "3", "--num_train_epochs", "4"])
    with pytest.raises(
        InvalidConfigError, match="mixed_precision is given twice in config file .*, as bf16 and as fp16"
    ):
        load_config(_write(tmp_path, "bf16: true\nfp16: false\n"))


@pytest.mark.parametrize(
    ("name", "ours", "words"),
    [
        ("max_grad_norm", "grad_clamp", "clamps each gradient element"),
        ("gradient_accumulation_steps", "per_device_batch_size", "the loss sees the whole global batch at once"),
        ("batch_size", "per_device_batch_size", "the batch is given per process"),
        ("adam_beta1", "adam_betas", "one key here, adam_betas: [beta1, beta2]"),
        ("warmup_steps", "lr_step_epochs", "without warmup"),
        ("eval_steps", "eval_every_epochs", "not every N steps"),
    ],
)
def test_names_that_mean_something_else_are_refused_naming_our_key(name, ours, words, tmp_path):
    with pytest.raises(InvalidConfigError) as error:
        load_config(None, [*BASE_TOKENS, f"--{name}", "2"])
    message = str(error.value)
    assert message.startswith(f"--{name} (given on the command line) is not a key here: ")
    assert words in message and message.endswith(f"Use --{ours}.")
    with pytest.raises(
        InvalidConfigError, match=f"{name} \\(given in config file .*\\) is not a key here.* Use {ours}"
    ):
        load_config(_write(tmp_path, f"{name}: 2\n"))


def test_every_alias_and_refused_name_is_declared_once_and_is_no_key():
    aliases, refused = key_aliases(TrainingConfig), refused_names(TrainingConfig)
    keys = set(TrainingConfig.__dataclass_fields__)
    assert not (set(aliases) & keys) and not (set(refused) & keys) and not (set(aliases) & set(refused))
    assert {key for key, _ in aliases.values()} <= keys and {key for key, _ in refused.values()} <= keys


@pytest.mark.parametrize(
    ("tokens", "unknown", "guess"),
    [
        (["--epoch", "3"], "--epoch", "--epochs"),
        (["--lerning_rate=1e-3"], "--lerning_rate", "--learning_rate"),
        (["--num_train_epoch", "3"], "--num_train_epoch", "--num_train_epochs"),
        (["--output-dri", "x"], "--output-dri", "--output_dir"),
    ],
)
def test_an_unknown_option_gets_a_did_you_mean_over_keys_and_aliases(tokens, unknown, guess):
    with pytest.raises(InvalidConfigError) as error:
        load_config(None, [*BASE_TOKENS, *tokens])
    assert str(error.value).startswith(f"Unknown config key(s) ['{unknown}'] (did you mean {guess}?); accepted keys: ")


def test_an_unknown_key_in_a_file_names_the_file_and_gets_a_did_you_mean(tmp_path):
    path = _write(tmp_path, "epoch: 3\n")
    with pytest.raises(InvalidConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(
        f"Unknown config key(s) ['epoch'] (did you mean epochs?); accepted keys in config file '{path}': dataset_path, "
    )


def test_a_mistyped_puma_field_or_mapping_gets_a_did_you_mean():
    with pytest.raises(InvalidConfigError, match=r"\['keep_prb'\] in puma \(did you mean puma.keep_prob\?\)"):
        load_config(None, [*BASE_TOKENS, "--puma.keep_prb", "1"])
    with pytest.raises(InvalidConfigError, match=r"\['--pumaa.r'\] \(did you mean --puma.r\?\)"):
        load_config(None, [*BASE_TOKENS, "--pumaa.r", "8"])


def test_a_name_nothing_resembles_gets_no_guess():
    assert did_you_mean("zzzz", ["epochs", "seed"]) is None
    with pytest.raises(InvalidConfigError) as error:
        load_config(None, [*BASE_TOKENS, "--zzzz", "1"])
    assert "did you mean" not in str(error.value)


def test_the_commands_print_the_did_you_mean_as_one_line_with_status_2(capsys):
    assert train.main([*BASE_TOKENS, "--epoch", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown config key(s) ['--epoch'] (did you mean --epochs?)") and "\n" not in err
    assert evaluate.main(["--adapter", "a", "--uml_mini", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown config key(s) ['--uml_mini'] (did you mean --uml_mini_dir?)")
    assert evaluate.main(["--adapter", "a", "--eval_k", "1"]) == 2  # evaluate's own options are guessed too
    assert "(did you mean --eval_ks?)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["--eval_ks", "1", "4"], {"eval_ks": [1, 4]}),
        (["--eval_ks", "[1, 4]"], {"eval_ks": [1, 4]}),
        (["--eval_ks=[1, 4]"], {"eval_ks": [1, 4]}),
        (["--eval_ks", "8"], {"eval_ks": [8]}),
        (["--crop_scale", "0.5", "1", "--seed", "3"], {"crop_scale": [0.5, 1], "seed": 3}),
        (["--report_to", "wandb", "tensorboard"], {"report_to": ["wandb", "tensorboard"]}),
        (["--datasets", "null"], {"datasets": None}),
        (["--lora_target_modules", "all-linear"], {"lora_target_modules": "all-linear"}),
        (["--lora_target_modules", "query", "value"], {"lora_target_modules": ["query", "value"]}),
    ],
)
def test_a_list_key_takes_its_items_one_by_one_or_as_a_yaml_list(tokens, expected):
    assert parse_cli_overrides(tokens, TrainingConfig) == expected


def test_report_to_takes_one_tracker_by_name_as_training_arguments_does(tmp_path):
    assert load_config(_write(tmp_path, "report_to: none\n")).report_to == ["none"]


def test_max_steps_minus_one_is_explained_as_null():
    with pytest.raises(InvalidConfigError, match=r"max_steps must be positive or null .* -1 is null here"):
        load_config(None, {**BASE, "max_steps": -1})
