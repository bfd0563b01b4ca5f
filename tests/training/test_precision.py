"""Which precision a run trains in: the config's mixed_precision when it gives one; else accelerate's choice
(ACCELERATE_MIXED_PRECISION, which `accelerate launch` sets from its flag or config, or accelerate's default config
file); else auto. The run prints it with its source, records what applied, and --resume compares what applies."""

from __future__ import annotations

import json
import os

import pytest

from peft_puma import train
from peft_puma.config.keys import key_roles
from peft_puma.errors import InvalidConfigError
from peft_puma.runs.same_run import RunIdentity, run_differences
from peft_puma.training import load_config
from peft_puma.training.arguments import PRECISION_VARIABLE, TrainingConfig, resolve_precision

from .conftest import train_in_subprocess, write_config


@pytest.fixture(autouse=True)
def no_accelerate_settings(monkeypatch, tmp_path):
    """Neither the variable nor a default config file, whatever the machine running the tests has."""
    monkeypatch.delenv(PRECISION_VARIABLE, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def _accelerate_config(tmp_path, precision: str) -> None:
    folder = tmp_path / "hf_home" / "accelerate"
    folder.mkdir(parents=True)
    (folder / "default_config.yaml").write_text(f"compute_environment: LOCAL_MACHINE\nmixed_precision: {precision}\n")


def _argv(values: dict) -> list[str]:
    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def _run_file_config(output_dir: str) -> dict:
    with open(os.path.join(output_dir, "peft_puma_training.json")) as handle:
        return json.load(handle)["config"]


def test_without_a_key_the_launch_variable_decides(monkeypatch):
    monkeypatch.setenv(PRECISION_VARIABLE, "bf16")
    precision = resolve_precision(None)
    assert precision.applied == "bf16"
    assert precision.line() == (
        "Precision: bf16 (from ACCELERATE_MIXED_PRECISION=bf16, which accelerate launch sets from --mixed_precision or "
        "its config)."
    )


def test_without_a_key_or_a_variable_the_accelerate_config_file_decides(tmp_path):
    _accelerate_config(tmp_path, "bf16")
    precision = resolve_precision(None)
    assert precision.applied == "bf16" and "mixed_precision: bf16 in the accelerate config file" in precision.source
    assert str(tmp_path / "hf_home" / "accelerate" / "default_config.yaml") in precision.source


def test_an_explicit_key_wins_over_accelerate(monkeypatch, tmp_path):
    monkeypatch.setenv(PRECISION_VARIABLE, "bf16")
    _accelerate_config(tmp_path, "bf16")
    assert resolve_precision("no") == ("no", "mixed_precision: no, given in the config or on the command line")
    auto = resolve_precision("auto")  # auto, given, is the device's rule, not accelerate's choice
    assert auto.applied == "no" and auto.source.startswith("mixed_precision: auto, given; fp32 on the CPU")


@pytest.mark.parametrize("written", ["--mixed_precision no", "--mixed_precision=no", "file"])
def test_an_unquoted_no_is_the_value_no_not_yaml_false(tmp_path, written):
    values = {"output_dir": "o", "backbone": "b", "dataset_path": "d"}
    if written == "file":
        path = tmp_path / "config.yaml"
        path.write_text("output_dir: o\nbackbone: b\ndataset_path: d\nmixed_precision: no\n")
        config = load_config(str(path), [])
    else:
        config = load_config(None, [f"--{k}={v}" for k, v in values.items()] + written.replace("=", " ").split())
    assert config.mixed_precision == "no"


def test_an_accelerate_config_file_with_an_unquoted_no_means_no(tmp_path):
    _accelerate_config(tmp_path, "no")
    assert resolve_precision(None).applied == "no"


def test_with_neither_the_run_keeps_auto():
    precision = resolve_precision(None)
    assert precision.applied == "no"  # the tests run on the CPU
    assert "neither the config, ACCELERATE_MIXED_PRECISION nor an accelerate config file" in precision.source


def test_a_precision_peft_puma_does_not_train_in_is_refused_naming_its_source(monkeypatch):
    monkeypatch.setenv(PRECISION_VARIABLE, "fp8")
    with pytest.raises(InvalidConfigError, match="ACCELERATE_MIXED_PRECISION=fp8.* asks for mixed precision 'fp8'"):
        resolve_precision(None)


@pytest.mark.parametrize("where", ["key", "variable", "file"])
def test_fp16_on_the_cpu_is_refused_with_the_bf16_alternative(monkeypatch, tmp_path, where):
    """Accelerate ignores fp16 on the CPU: the run would train in fp32 while printing and recording fp16."""
    if where == "variable":
        monkeypatch.setenv(PRECISION_VARIABLE, "fp16")
    if where == "file":
        _accelerate_config(tmp_path, "fp16")
    with pytest.raises(InvalidConfigError, match=r"fp16 \(.*\) does not apply on the CPU.*Use --bf16"):
        resolve_precision("fp16" if where == "key" else None)


def test_train_with_fp16_on_the_cpu_exits_2_before_writing_anything(tiny_values, capsys):
    assert train.main([*_argv(tiny_values), "--fp16"]) == 2
    error = capsys.readouterr().err
    assert "does not apply on the CPU" in error and "--bf16" in error and "Traceback" not in error
    assert not os.path.exists(tiny_values["output_dir"])


def test_runs_compare_the_precision_that_applies():
    roles = key_roles(TrainingConfig)

    def differences(saved, wanted):
        return run_differences(
            RunIdentity({"mixed_precision": saved}), RunIdentity({"mixed_precision": wanted}), roles, finished=True
        )

    assert differences("auto", "no") == []  # a run saved before precision was recorded, resumed on the CPU
    assert differences("no", None) == []  # the key left to accelerate, which says nothing: auto, fp32 here
    assert [d.key for d in differences("bf16", None)] == ["mixed_precision"]


def test_a_run_prints_and_records_the_precision_that_applied(tiny_values, capsys):
    values = {**tiny_values, "epochs": 1, "max_steps": 2}
    assert train.main(_argv(values)) == 0
    out = capsys.readouterr().out
    assert "Precision: no (auto: neither the config, ACCELERATE_MIXED_PRECISION nor an accelerate config file" in out
    assert _run_file_config(values["output_dir"])["mixed_precision"] == "no"


def test_the_launch_variable_reaches_the_run_and_resume_compares_what_applies(tiny_values, tmp_path, capsys):
    """A run under ACCELERATE_MIXED_PRECISION=bf16 (as `accelerate launch --mixed_precision bf16` starts it) trains in
    bf16 and records it; resuming it where fp32 would apply is refused, naming the key."""
    values = {**tiny_values, "epochs": 2, "max_steps": 4, "save_every_steps": 2}
    config_path = write_config(str(tmp_path / "run.yaml"), values)
    done = train_in_subprocess(config_path, "--max_steps", "2", env={PRECISION_VARIABLE: "bf16"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Precision: bf16 (from ACCELERATE_MIXED_PRECISION=bf16" in done.stdout
    assert _run_file_config(values["output_dir"])["mixed_precision"] == "bf16"
    os.remove(os.path.join(values["output_dir"], "results.json"))
    capsys.readouterr()
    assert train.main([*_argv(values), "--resume"]) == 2
    error = capsys.readouterr().err
    assert "was written by a run with other settings (mixed_precision: 'bf16' -> 'no')" in error
