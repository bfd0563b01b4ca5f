"""Smoke runs of the benchmark scripts on tiny configurations, so that they cannot silently rot.

Each script runs once per module, as a user would run it (``python benchmarks/<name>.py``), on a tiny random ViT and,
for accuracy, a tiny unified dataset; the tests then check the output's schema: every method present, every number
finite and of the right sign, ratios consistent with the measurements they are computed from, figures written.
Nothing here checks how fast or how accurate anything is: tiny models say nothing about that.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COST_METHODS = ("frozen", "linear", "prompt", "lora", "static_adapter", "puma", "full_ft")
ACCURACY_TABLE3 = (
    "single prompt",
    "conditional prompt",
    "static adapter",
    "stochastic adapter",
    "single prompt + static adapter",
    "conditional prompt + stochastic adapter (PUMA)",
)


def _run_script(name: str, *args: str) -> str:
    """Run ``benchmarks/<name>`` as a user would; its standard output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, os.path.join(REPO, "benchmarks", name), *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _non_negative(value: float) -> bool:
    """Memory rises on a CPU are measured on the resident set: at the tiny test shape a step can fit in pages the
    heap already holds, so zero is a true measurement there (the ViT-S/16 shape always rises)."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _training_fixtures():
    """The training tests' tiny backbone and dataset builders (tests/training/fixtures.py), loaded by path."""
    path = os.path.join(REPO, "tests", "training", "fixtures.py")
    spec = importlib.util.spec_from_file_location("training_fixtures_for_benchmarks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------- cost
@pytest.fixture(scope="module")
def cost(tmp_path_factory) -> tuple[dict, str, str]:
    """The smoke run's JSON, figure path and printed report."""
    folder = tmp_path_factory.mktemp("cost")
    output, figure = str(folder / "cost.json"), str(folder / "cost.png")
    printed = _run_script(
        "cost.py",
        *("--shape", "tiny", "--output", output, "--figure", figure, "--num_classes", "10"),
        *("--train_batch_size", "2", "--infer_batch_size", "2", "--warmup", "1", "--repeats", "2"),
        *("--scale_image_sizes", "32", "--scale_infer_batch_sizes", "1", "--scale_train_batch_sizes", "2"),
        *("--scale_repeats", "1", "--memory_steps", "1"),
        *("--compile_methods", "frozen", "puma", "--compile_backend", "aot_eager"),
        *("--form_batch_sizes", "1", "2", "--form_repeats", "1"),
        *("--breakdown", "puma", "full_ft", "--breakdown_steps", "1"),
    )
    with open(output, encoding="utf-8") as handle:
        return json.load(handle), figure, printed


@pytest.fixture(scope="module")
def cost_inference_only(tmp_path_factory) -> tuple[dict, str]:
    """The smoke run of ``--only inference``: its JSON and printed report."""
    output = str(tmp_path_factory.mktemp("cost_inference") / "cost.json")
    printed = _run_script(
        "cost.py",
        *("--only", "inference", "--shape", "tiny", "--output", output),
        *("--form_batch_sizes", "2", "--form_repeats", "2", "--warmup", "1"),
        *("--compile_forms", "--compile_backend", "aot_eager"),
        *("--note", "another job shares the cores"),
    )
    with open(output, encoding="utf-8") as handle:
        return json.load(handle), printed


def test_cost_reports_every_method_with_finite_numbers_of_the_right_sign(cost) -> None:
    result = cost[0]
    assert tuple(result["methods"]) == COST_METHODS
    for name, entry in result["methods"].items():
        trained = name != "frozen"
        for key in ("trainable_params", "adapter_mb"):
            assert _positive(entry[key]) if trained else entry[key] == 0, (name, key, entry[key])
        assert _positive(entry["train_step_s"]) if trained else entry["train_step_s"] is None, (name, entry)
        assert _non_negative(entry["train_peak_mb"]) if trained else entry["train_peak_mb"] is None, (name, entry)
        for key in ("infer_s", "infer_images_per_s", "rss_at_rest_mb"):
            assert _positive(entry[key]), (name, key, entry[key])
        assert _non_negative(entry["infer_peak_mb"]), (name, entry["infer_peak_mb"])


def test_cost_ratios_are_computed_from_the_reported_measurements(cost) -> None:
    result = cost[0]
    methods, ratios = result["methods"], result["ratios"]
    for name in COST_METHODS:
        assert ratios[name]["infer_vs_frozen"] == pytest.approx(methods[name]["infer_s"] / methods["frozen"]["infer_s"])
        if name != "frozen":
            full_ft = methods["full_ft"]
            assert ratios[name]["train_step_vs_full_ft"] == pytest.approx(
                methods[name]["train_step_s"] / full_ft["train_step_s"]
            )
            peak, base = methods[name]["train_peak_mb"], full_ft["train_peak_mb"]
            assert ratios[name]["train_peak_vs_full_ft"] == (pytest.approx(peak / base) if base else None)
    assert ratios["frozen"]["infer_vs_frozen"] == pytest.approx(1.0)
    assert ratios["full_ft"]["train_step_vs_full_ft"] == pytest.approx(1.0)


def test_cost_trainable_parameters_are_those_of_the_trainer(cost) -> None:
    """The benchmark builds every method through the training package: full FT trains the most, the linear head the
    least, and PUMA exactly its adapters + prompt pool + head."""
    result = cost[0]
    params = {name: entry["trainable_params"] for name, entry in result["methods"].items()}
    assert params["linear"] < params["prompt"] < params["puma"] < params["full_ft"]
    assert params["static_adapter"] + params["prompt"] - params["linear"] < params["puma"]  # + the pool's keys
    assert result["components"]["adapters_only"]["trainable_params"] == params["static_adapter"]


def test_cost_measures_puma_and_full_ft_with_activation_checkpointing(cost) -> None:
    """Two more training rows: the same methods with the trainer's activation_checkpointing switch on, their
    parameters unchanged, and the like-for-like memory ratio computed from them."""
    result = cost[0]
    rows = result["activation_checkpointing"]
    assert set(rows) == {"puma_checkpointed", "full_ft_checkpointed"}
    for name, plain in (("puma_checkpointed", "puma"), ("full_ft_checkpointed", "full_ft")):
        assert rows[name]["activation_checkpointing"] and not result["methods"][plain]["activation_checkpointing"]
        assert rows[name]["trainable_params"] == result["methods"][plain]["trainable_params"]
        assert _positive(rows[name]["train_step_s"]) and _non_negative(rows[name]["train_peak_mb"])
    ratios = result["checkpointing_ratios"]
    assert ratios["both_checkpointed_train_step_puma_vs_full_ft"] == pytest.approx(
        rows["puma_checkpointed"]["train_step_s"] / rows["full_ft_checkpointed"]["train_step_s"]
    )
    peak, base = rows["puma_checkpointed"]["train_peak_mb"], rows["full_ft_checkpointed"]["train_peak_mb"]
    assert ratios["both_checkpointed_train_peak_puma_vs_full_ft"] == (pytest.approx(peak / base) if base else None)


def test_cost_reports_overhead_shares_scaling_headline_ratios_and_where_it_ran(cost) -> None:
    result, figure, printed = cost
    for phase in ("inference", "training"):
        assert set(result["puma_overhead"][phase]) >= {"puma_extra_s", "prompts_extra_s", "adapters_extra_s"}
    for key in ("image_size", "infer_batch_size", "train_batch_size"):
        assert result["scaling"][key], key
    for row in result["scaling"]["image_size"]:
        assert _positive(row["infer_s"]["puma"]) and _positive(row["infer_s"]["frozen"])
        assert row["puma_infer_vs_frozen"] == pytest.approx(row["infer_s"]["puma"] / row["infer_s"]["frozen"])
    for row in result["scaling"]["train_batch_size"]:
        assert set(row["train_step_s_per_image"]) == {"puma", "full_ft"}  # the frozen backbone is not trained
    # No acceptance targets in the result: they are prose in docs/benchmarks.md; the script prints the ratios.
    assert "targets" not in result
    puma = result["ratios"]["puma"]
    for text, value in (
        ("PUMA inference time per image / frozen backbone", puma["infer_vs_frozen"]),
        ("PUMA training step time / full fine-tuning", puma["train_step_vs_full_ft"]),
        ("PUMA adapter file (MB)", result["methods"]["puma"]["adapter_mb"]),
    ):
        assert f"{text}: {value:,.3f}" in printed, text
    assert result["versions"]["torch"] and result["machine"]["cpu"] and len(result["load_average_end"]) == 3
    assert os.path.getsize(figure) > 0


def test_cost_times_the_trainers_own_step(cost) -> None:
    """The step timed is ``peft_puma.training.step.TrainingStep`` with the recipe's defaults, through accelerate:
    backward goes through the accelerator (so fp16 gets its gradient scaling), the weights and the schedule move."""
    assert cost[0]["settings"]["training_step"].startswith("peft_puma.training.step.TrainingStep, TrainingConfig")
    code = """
import sys
import torch
sys.path.insert(0, "benchmarks")
from cost_models import SHAPES, Runtime, build_method, make_batch, training_step
from peft_puma.training.step import TrainingStep

step = training_step(build_method("puma", SHAPES["tiny"].vit(), "cpu"), 10, Runtime())
assert type(step) is TrainingStep, type(step)
backward, calls = step.accelerator.backward, []
step.accelerator.backward = lambda loss: (calls.append(loss), backward(loss))
before = [p.detach().clone() for p in step.trainable]
losses = step(*make_batch(2, 32, 10, 0))
assert len(calls) == 1 and calls[0] is losses.total and torch.isfinite(losses.total)
assert any(not torch.equal(old, new) for old, new in zip(before, step.trainable))
assert step.scheduler.last_epoch == 1 and step.objective.training
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize(
    ("script", "underscored"),
    [
        ("cost.py", ["--output", "x.json", "--train_batch_size", "3", "--no_memory"]),
        ("accuracy.py", ["--output", "x.json", "--max_steps", "3", "--reuse_finished", "--split", "validation"]),
        ("retrieval_eval.py", ["--num_rows", "3", "--no_domains"]),
    ],
)
def test_flags_are_underscored_with_hidden_hyphenated_aliases(script, underscored, capsys) -> None:
    module = _load_script(script)
    hyphenated = [token.replace("_", "-") if token.startswith("--") else token for token in underscored]
    assert vars(module.parse_args(underscored)) == vars(module.parse_args(hyphenated))
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert all(flag in shown for flag in underscored if flag.startswith("--"))
    assert not [word for word in shown.split() if word.startswith("--") and "-" in word[2:]], shown


def _load_script(name: str):
    path = os.path.join(REPO, "benchmarks", name)
    spec = importlib.util.spec_from_file_location(f"benchmark_script_{name[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_cost_refuses_fp16_on_a_cpu() -> None:
    with pytest.raises(SystemExit):
        _load_script("cost.py").parse_args(["--output", "x.json", "--precision", "fp16"])


def test_cost_times_compiled_inference_beside_eager(cost) -> None:
    result = cost[0]
    compiled = result["compiled_inference"]
    assert list(compiled) == ["frozen", "puma"]
    for name, entry in compiled.items():
        assert entry["backend"] == "aot_eager"
        for key in ("compile_s", "eager_infer_s", "compiled_infer_s", "compiled_speedup"):
            assert _positive(entry[key]), (name, key, entry[key])
        assert entry["compiled_speedup"] == pytest.approx(entry["eager_infer_s"] / entry["compiled_infer_s"])
        assert entry["compiled_vs_frozen_compiled"] == pytest.approx(
            entry["compiled_infer_s"] / compiled["frozen"]["compiled_infer_s"]
        )


INFERENCE_FORMS = ("frozen", "puma", "puma_fused", "lora", "lora_merged")


def _check_inference_forms(rows: list[dict], batch_sizes: list[int]) -> None:
    """Every form at every batch, timed, its FLOPs counted; rewritten forms equal to their sources; ratios computed
    from the numbers beside them; fused PUMA with PUMA's FLOPs and merged LoRA with the frozen backbone's plus the
    head's."""
    assert [row["batch_size"] for row in rows] == batch_sizes
    for row in rows:
        forms = row["forms"]
        assert tuple(forms) == INFERENCE_FORMS
        frozen = forms["frozen"]
        for name, form in forms.items():
            assert _positive(form["infer_s"]) and _positive(form["flops_per_image"]), (name, form)
            assert form["infer_vs_frozen"] == pytest.approx(form["infer_s"] / frozen["infer_s"])
            assert form["infer_cpu_vs_frozen"] == pytest.approx(form["infer_cpu_s"] / frozen["infer_cpu_s"])
            assert form["flops_vs_frozen"] == pytest.approx(form["flops_per_image"] / frozen["flops_per_image"])
        assert forms["puma_fused"]["flops_per_image"] == forms["puma"]["flops_per_image"]
        assert frozen["flops_per_image"] < forms["lora_merged"]["flops_per_image"] < forms["lora"]["flops_per_image"]
        for name in ("puma_fused", "lora_merged"):
            assert 0 <= forms[name]["max_abs_difference"] < 1e-5, (name, forms[name])
        assert row["flops_floor"] == pytest.approx(forms["puma"]["flops_vs_frozen"]) and row["flops_floor"] > 1
        assert row["fused_vs_floor"] == pytest.approx(forms["puma_fused"]["infer_vs_frozen"] / row["flops_floor"])


def test_cost_reports_the_inference_forms_in_the_full_run(cost) -> None:
    result, _, printed = cost
    _check_inference_forms(result["inference_forms"], [1, 2])
    assert "| 2 | puma_fused |" in printed
    floor = result["inference_forms"][1]["flops_floor"]
    assert f"batch 2: PUMA FLOPs / frozen backbone (the floor): {floor:,.3f}" in printed


def test_cost_only_inference_measures_the_forms_alone(cost_inference_only) -> None:
    result, printed = cost_inference_only
    _check_inference_forms(result["inference_forms"], [2])
    assert result["settings"]["measured"] == "inference" and result["note"] == "another job shares the cores"
    for part in ("methods", "components", "activation_checkpointing", "ratios", "scaling", "compiled_inference"):
        assert result[part] is None, part
    assert "fused PUMA inference / frozen backbone" in printed and "training step" not in printed


def test_cost_compile_forms_times_every_form_compiled_beside_its_eager_form(cost_inference_only) -> None:
    """The GPU script's question (is compiled inference faster, and is fused PUMA's ratio kept when both are
    compiled) needs every form's compiled time, its compile time and the ratios, from the same rounds."""
    result, printed = cost_inference_only
    assert result["settings"]["form_compile"] == "torch.compile(fullgraph=True, backend='aot_eager', mode=None)"
    (row,) = result["inference_forms"]
    for name, form in row["forms"].items():
        assert form["compile_error"] is None, (name, form["compile_error"])
        assert form["compiled_infer_s"] > 0 and form["compile_s"] > 0, name
        assert form["compiled_speedup"] == pytest.approx(form["infer_s"] / form["compiled_infer_s"]), name
    fused, frozen = row["forms"]["puma_fused"], row["forms"]["frozen"]
    assert fused["compiled_vs_frozen_compiled"] == pytest.approx(fused["compiled_infer_s"] / frozen["compiled_infer_s"])
    assert "| compiled ms/image | compiled vs frozen compiled |" in printed


def test_cost_compile_forms_records_a_form_the_compiler_refuses_and_goes_on(monkeypatch) -> None:
    """Which form a compiler cannot take is a finding; it must not cost the other forms' measurements."""
    _load_script("cost.py")  # puts benchmarks/ on the path, where cost.py imports its cost_measure from
    cost_measure = sys.modules["cost_measure"]
    forms = {"frozen": torch.nn.Linear(4, 4), "puma": torch.nn.Linear(4, 4)}
    real_compile = torch.compile

    def refusing_compile(model, **kwargs):
        if model is forms["puma"]:

            def refuse(*args, **kwargs):
                raise RuntimeError("graph break in the adapter\nmore detail")

            return refuse
        return real_compile(model, **kwargs)

    monkeypatch.setattr(cost_measure.torch, "compile", refusing_compile)
    monkeypatch.setattr(cost_measure, "inference_task", lambda model, pixels, runtime: lambda: model(pixels))
    options = SimpleNamespace(
        runtime=SimpleNamespace(synchronize=lambda: None), compile_backend="eager", compile_mode=None
    )
    compiled = cost_measure._compiled_forms(forms, torch.zeros(2, 4), options)
    assert compiled["puma"].task is None and compiled["puma"].error == "RuntimeError: graph break in the adapter"
    assert compiled["frozen"].error is None and compiled["frozen"].compile_s > 0


def test_gpu_inference_script_writes_its_four_runs_and_the_machine(tmp_path) -> None:
    """benchmarks/gpu_inference.sh is run once, on a lent GPU, with no time to debug it there: its four runs (batch
    180 and 45, then two compile modes at 180) must each leave a result and a report, here on the CPU at the tiny
    shape (its extra arguments override the device and the shape)."""
    out = tmp_path / "gpu"
    done = subprocess.run(
        ["bash", os.path.join(REPO, "benchmarks", "gpu_inference.sh"), str(out)]
        + [
            "--device",
            "cpu",
            "--shape",
            "tiny",
            "--form_repeats",
            "1",
            "--warmup",
            "0",
            "--compile_backend",
            "aot_eager",
        ],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {"b180": (180, None), "b45": (45, None), "b180_reduce_overhead": (180, "reduce-overhead")}
    expected["b180_max_autotune"] = (180, "max-autotune-no-cudagraphs")
    for name, (batch, mode) in expected.items():
        result = json.loads((out / f"{name}.json").read_text())
        assert result["settings"]["form_batch_sizes"] == [batch], name
        assert result["settings"]["form_compile"].endswith(f"mode={mode!r})"), name
        assert "| compiled ms/image |" in (out / f"{name}.md").read_text(), name
    assert "torch " in (out / "machine.txt").read_text()


def test_cost_breakdown_splits_the_step_into_the_parts_each_method_has(cost) -> None:
    """--breakdown: PUMA's step has time in every part; full fine-tuning has no adapters, gates or prompt pool, and
    its backward through the backbone is its activation backward."""
    result, _, printed = cost
    breakdown = result["step_breakdown"]
    assert set(breakdown) == {"puma", "full_ft"}
    parts = ["frozen forward", "activation backward", "adapters", "gates", "prompt pool", "head and loss", "optimizer"]
    assert all(list(row) == parts for row in breakdown.values())
    assert all(seconds > 0 for seconds in breakdown["puma"].values())
    full_ft = breakdown["full_ft"]
    assert full_ft["adapters"] == full_ft["gates"] == full_ft["prompt pool"] == 0
    assert full_ft["frozen forward"] > 0 and full_ft["activation backward"] > 0 and full_ft["optimizer"] > 0
    assert "| method (batch 2) | frozen forward | activation backward |" in printed


def test_gpu_training_script_writes_its_six_runs_and_the_machine(tmp_path) -> None:
    """benchmarks/gpu_training.sh, like gpu_inference.sh, runs once on a lent GPU with no time to debug it there:
    every run (eager and compiled training at 180 and 45, the breakdown, the inference forms) must leave its result,
    here on the CPU at the tiny shape."""
    out = tmp_path / "gpu"
    extra = ["--device", "cpu", "--shape", "tiny", "--repeats", "1", "--warmup", "0", "--form_repeats", "1"]
    extra += ["--compile_backend", "aot_eager", "--num_classes", "10", "--breakdown_steps", "1", "--no_memory"]
    done = subprocess.run(
        ["bash", os.path.join(REPO, "benchmarks", "gpu_training.sh"), str(out), *extra],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name, batch in {"train_b180": 180, "train_b45": 45}.items():
        for compiled in (False, True):
            result = json.loads((out / f"{name}{'_compiled' if compiled else ''}.json").read_text())
            assert result["settings"]["train_batch_size"] == batch, name
            assert (result["settings"]["training_compile"] is not None) == compiled, name
            assert result["methods"]["puma"]["train_step_s"] > 0, name
    assert set(json.loads((out / "train_b180.json").read_text())["step_breakdown"]) == {"puma", "static_adapter",
                                                                                          "full_ft"}  # fmt: skip
    for name, batch in {"forms_b180": 180, "forms_b45": 45}.items():
        assert json.loads((out / f"{name}.json").read_text())["settings"]["form_batch_sizes"] == [batch]
    assert "torch " in (out / "machine.txt").read_text()


def test_cost_compile_mode_without_compile_forms_is_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        _load_script("cost.py").parse_args(["--output", "x.json", "--compile_mode", "reduce-overhead"])
    assert "--compile_mode reduce-overhead applies to --compile_forms or --torch_compile" in capsys.readouterr().err


def test_cost_only_inference_refuses_the_full_runs_figure() -> None:
    with pytest.raises(SystemExit):
        _load_script("cost.py").parse_args(["--output", "x.json", "--only", "inference", "--figure", "x.png"])


def test_fusion_training_measurement_checks_its_folds_against_the_unfused_step(tmp_path) -> None:
    output = str(tmp_path / "fusion_training.json")
    printed = _run_script(
        "fusion_training.py", *("--shape", "tiny", "--output", output, "--batch_size", "2", "--repeats", "1")
    )
    with open(output, encoding="utf-8") as handle:
        result = json.load(handle)
    assert set(result["timings"]) == {"unfused", "autograd", "custom"}
    assert all(_positive(timing["wall_s"]) for timing in result["timings"].values())
    for fold in ("autograd", "custom"):
        assert result["largest_difference_vs_unfused"][fold]["gradients"] < 1e-4
        assert result["wall_vs_unfused"][fold] == pytest.approx(
            result["timings"][fold]["wall_s"] / result["timings"]["unfused"]["wall_s"]
        )
    assert "custom:" in printed


# ---------------------------------------------------------------------------------------------------- accuracy
@pytest.fixture(scope="module")
def accuracy(tmp_path_factory) -> tuple[dict, str]:
    folder = tmp_path_factory.mktemp("accuracy")
    fixtures = _training_fixtures()
    backbone = fixtures.make_backbone(str(folder / "vit"))
    dataset = fixtures.make_dataset(str(folder / "data"))
    output, figures = str(folder / "accuracy.json"), str(folder / "figures")
    _run_script(
        "accuracy.py",
        *("--output", output, "--figure_dir", figures, "--runs_dir", str(folder / "runs")),
        *("--backbone", backbone, "--dataset_path", dataset, "--epochs", "1", "--max_steps", "1"),
        *("--batch_size", "16", "--keep_probs", "0.5", "1.0"),
    )
    with open(output, encoding="utf-8") as handle:
        return json.load(handle), figures


def test_accuracy_records_the_backbones_fingerprint_and_the_data_source(accuracy) -> None:
    from peft_puma.backbones.fingerprint import fingerprint_of

    result, _ = accuracy
    folder = _accuracy_folder(accuracy)
    assert result["settings"]["backbone_fingerprint"] == fingerprint_of(str(folder / "vit"))
    assert result["settings"]["data_source"] == {"dataset_path": str(folder / "data")}
    assert result["git_commit"]


def _accuracy_folder(accuracy) -> Path:
    """The smoke run's folder (its backbone, data and run folders), from where its figures went."""
    return Path(accuracy[1]).parent


def test_accuracy_has_every_row_of_tables_2_and_3_and_the_sweep(accuracy) -> None:
    result, _ = accuracy
    domains = list(result["domain_sizes"])
    assert tuple(result["table2"]) == COST_METHODS
    assert tuple(result["table3"]) == ACCURACY_TABLE3
    assert tuple(result["keep_prob_sweep"]) == ("0.5", "1")
    for table in ("table2", "table3", "keep_prob_sweep"):
        for name, row in result[table].items():
            assert list(row["recall_at_1"]) == domains, (table, name)
            for score in [*row["recall_at_1"].values(), row["unified"], row["harmonic"]]:
                assert 0.0 <= score["mean"] <= 100.0 and math.isfinite(score["std"]), (table, name, score)
            assert row["trainable_params"] > 0 or name == "frozen", (table, name)


def test_accuracy_reports_puma_minus_every_other_row_paired_by_seed(accuracy) -> None:
    result, _ = accuracy
    rows = [name for name in COST_METHODS if name != "puma"]
    ablations = ["conditional prompt", "stochastic adapter", "single prompt + static adapter"]  # not Table 2 rows
    assert list(result["puma_minus"]) == [*rows, *ablations, "PUMA at p = 1"]
    puma, frozen = result["runs"]["puma_seed0"], result["zero_shot_run"]
    for key in ("unified", "harmonic"):  # one seed: the difference of the two runs, no spread
        assert result["puma_minus"]["frozen"][key]["mean"] == pytest.approx(puma[key] - frozen[key])
        assert result["puma_minus"]["frozen"][key]["std"] == 0.0
    assert "| PUMA minus | Unified | Harmonic |" in result["markdown"]


def test_accuracy_report_names_the_users_data_and_reads_the_sweep_against_frozen(accuracy) -> None:
    """On a user's own data the report must not claim UML-mini, and the sweep's table starts from the frozen row."""
    result, _ = accuracy
    markdown = result["markdown"]
    assert markdown.startswith("R@1 (%) on data (test split)") and "UML-mini" not in markdown.splitlines()[0]
    sweep = markdown[markdown.index("Keep-probability sweep") :]
    frozen = result["zero_shot_run"]
    (row,) = [line for line in sweep.splitlines() if line.startswith("| frozen (zero-shot) | ")]
    assert row.endswith(f" {frozen['unified']:.1f} | {frozen['harmonic']:.1f} |")


def test_sweep_table_shows_the_seed_spread_when_there_are_several_seeds():
    module = _load_script("accuracy.py")
    scores = {"mean": 50.0, "std": 1.25}
    row = {"recall_at_1": {"big": scores, "small": scores}, "unified": scores, "harmonic": scores}
    frozen = {"recall_at_1": {"big": 40.0, "small": 30.0}, "unified": 35.0, "harmonic": 34.0}
    sizes = {"big": {"train_images": 900}, "small": {"train_images": 90}}
    spread = module.sweep_table({"0.5": row}, frozen, ["big", "small"], sizes, spread=True)
    assert spread.splitlines()[0].startswith("| p | small (90 img) | big (900 img) |")  # ordered by size
    assert "| frozen (zero-shot) | 30.0 | 40.0 | 35.0 | 34.0 |" in spread
    assert "| 0.5 | 50.0 ± 1.2 | 50.0 ± 1.2 |" in spread
    assert "±" not in module.sweep_table({"0.5": row}, frozen, ["big", "small"], sizes, spread=False)


def test_paired_differences_subtract_seed_by_seed():
    module = _load_script("accuracy.py")
    runs = {
        module.RunSpec("puma", 0): {"unified": 30.0, "harmonic": 20.0},
        module.RunSpec("puma", 1): {"unified": 40.0, "harmonic": 10.0},
        module.RunSpec("lora", 0): {"unified": 29.0, "harmonic": 22.0},
        module.RunSpec("lora", 1): {"unified": 39.0, "harmonic": 8.0},
    }
    differences = module.puma_differences([0, 1], runs, {"unified": 35.0, "harmonic": 15.0})
    assert list(differences) == ["frozen", "lora"]  # rows without runs are left out
    assert differences["lora"]["unified"]["mean"] == 1.0 and differences["lora"]["unified"]["std"] == 0.0
    assert differences["lora"]["harmonic"]["mean"] == 0.0  # -2 and +2: no difference on average ...
    assert differences["lora"]["harmonic"]["std"] == pytest.approx(2.8284, abs=1e-4)  # ... and a large spread
    assert differences["frozen"]["unified"]["mean"] == 0.0 and differences["frozen"]["unified"]["std"] > 7


def test_accuracy_trains_shared_runs_once(accuracy) -> None:
    """PUMA is Table 2's and Table 3's last row and the sweep's p = 0.5: one run serves all three."""
    result, _ = accuracy
    assert len(result["runs"]) == len(set(result["settings"]["runs"])) == 10
    assert result["table2"]["puma"] == result["table3"]["conditional prompt + stochastic adapter (PUMA)"]
    assert result["table2"]["puma"] == result["keep_prob_sweep"]["0.5"]


def test_accuracy_reports_prompt_weights_per_domain_and_figures(accuracy) -> None:
    result, figures = accuracy
    weights = result["prompt_weights"]
    assert list(weights) == list(result["domain_sizes"])
    assert all(len(values) == 20 and all(math.isfinite(v) for v in values) for values in weights.values())
    assert "| frozen |" in result["markdown"]
    for name in ("keep_prob_sweep.png", "prompt_weights.png"):
        assert os.path.getsize(os.path.join(figures, name)) > 0
    from PIL import Image

    from peft_puma.evaluation.grid import DEFAULT_THUMBNAIL, grid_size

    with Image.open(os.path.join(figures, "retrieval_examples.png")) as sheet:  # frozen, full FT, PUMA per query
        assert sheet.size == grid_size(2 * len(result["domain_sizes"]) * 3, 6, DEFAULT_THUMBNAIL)


def _accuracy_args(folder, runs_dir: str, output: str) -> list[str]:
    """The smoke fixture's arguments, for a second run on the same tiny backbone and data."""
    return [
        *("--output", output, "--runs_dir", runs_dir),
        *("--backbone", str(folder / "vit"), "--dataset_path", str(folder / "data"), "--epochs", "1"),
        *("--max_steps", "1", "--batch_size", "16", "--keep_probs", "0.5", "1.0", "--reuse_finished"),
    ]


def _edit_run_file(path: str, **changes) -> None:
    with open(path, encoding="utf-8") as handle:
        run = json.load(handle)
    for key, value in changes.items():
        if key in run:
            run[key] = value
        else:
            run["config"][key] = value
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(run, handle)


def test_accuracy_reuse_finished_assembles_the_tables_from_run_folders(accuracy, tmp_path) -> None:
    """Finished runs are read, not retrained (same scores, folders untouched); a run trained by 2 processes with half
    the per-process batch counts as the same recipe (the ``accelerate launch`` route); an unfinished run resumes."""
    first, _ = accuracy
    folder = _accuracy_folder(accuracy)
    runs = tmp_path / "runs"
    shutil.copytree(folder / "runs", runs)
    _edit_run_file(str(runs / "lora_seed0" / "peft_puma_training.json"), per_device_batch_size=8, num_processes=2)
    os.remove(runs / "linear_seed0" / "results.json")  # unfinished: its final checkpoint is there, its results not
    adapter = runs / "puma_seed0" / "adapter_model.safetensors"
    stamp = os.stat(adapter).st_mtime_ns
    output = str(tmp_path / "again.json")
    _run_script("accuracy.py", *_accuracy_args(folder, str(runs), output))
    with open(output, encoding="utf-8") as handle:
        again = json.load(handle)
    for name, run in again["runs"].items():
        assert run.get("reused_from") == (None if name == "linear_seed0" else str(runs / name)), name
    resumed = again["runs"]["linear_seed0"]
    # Resumed from its final checkpoint: at step 1 of 1 with no step run again (retrained, it would have a loss).
    assert resumed["steps"] == 1 and resumed["final_loss"] is None
    for table in ("table2", "table3", "keep_prob_sweep"):
        for name, row in first[table].items():  # same scores and parameter counts; no training time for reused runs
            assert {**again[table][name], "wall_s": None} == {**row, "wall_s": None}, (table, name)
            assert (again[table][name]["wall_s"] is None) == (name not in ("frozen", "linear")), (table, name)
    assert again["prompt_weights"].keys() == first["prompt_weights"].keys()
    for domain, weights in first["prompt_weights"].items():  # approx compares flat sequences only (pytest >= 9.2)
        assert again["prompt_weights"][domain] == pytest.approx(weights), domain
    assert os.stat(adapter).st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": 0.123}, "learning_rate: 0.123 there"),
        ({"data_sizes": {"other": {"train_images": 9}}}, "data_sizes.other: {'train_images': 9} there, None here"),
        ({"backbone_fingerprint": "sha256:" + "0" * 64}, "backbone weights (fingerprint of the tensors): 'sha256:000"),
    ],
    ids=["recipe", "data", "backbone weights"],
)
def test_accuracy_reuse_finished_refuses_a_run_of_another_recipe_or_data(accuracy, tmp_path, change, message) -> None:
    folder = _accuracy_folder(accuracy)
    runs = tmp_path / "runs"
    shutil.copytree(folder / "runs", runs)
    _edit_run_file(str(runs / "puma_seed0" / "peft_puma_training.json"), **change)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, os.path.join(REPO, "benchmarks", "accuracy.py")]
    command += _accuracy_args(folder, str(runs), str(tmp_path / "x.json"))
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "puma_seed0" in done.stderr and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert os.path.isfile(runs / "puma_seed0" / "results.json")  # nothing of that run was touched


def _accuracy_split_args(folder: Path, split: str, validation: bool) -> list[str]:
    """Arguments of the accuracy script on a tiny backbone and dataset (with or without a validation split)."""
    fixtures = _training_fixtures()
    backbone = fixtures.make_backbone(str(folder / "vit"))
    data = fixtures.make_dataset(str(folder / "data"), validation=validation)
    return [
        *("--output", str(folder / "x.json"), "--runs_dir", str(folder / "runs"), "--split", split),
        *("--backbone", backbone, "--dataset_path", data, "--threads", "1"),
    ]


def test_accuracy_split_reaches_every_run_the_zero_shot_row_and_the_prompt_weights(tmp_path, monkeypatch) -> None:
    """--split validation: every run's eval_split, the frozen row, the prompt weights and the recorded settings."""
    module = _load_script("accuracy.py")
    args = module.parse_args(_accuracy_split_args(tmp_path, "validation", validation=True))
    setup = module.set_up(args)
    recorded = module.settings(setup)
    assert recorded["split"] == "validation" and recorded["overrides"]["eval_split"] == "validation"
    config = module.run_config(module.RunSpec("puma", 0), args, args.runs_dir)
    assert config.eval_split == "validation"
    splits, evaluate_adapter = [], module.evaluate_adapter
    monkeypatch.setattr(
        module,
        "evaluate_adapter",
        lambda *a, **k: (splits.append(k["split"]), evaluate_adapter(*a, **k))[1],
    )
    module.zero_shot(args)
    assert splits == ["validation"]
    model, rows = module.untrained_model(config), []
    prompt_weights = model.prompt_weights
    model.prompt_weights = lambda pixels: (rows.append(len(pixels)), prompt_weights(pixels))[1]
    module.prompt_weights_by_domain(model, config)
    assert sum(rows) == 8 + 8 + 10  # the validation rows of the tiny dataset, not its 39 test rows


def test_accuracy_split_validation_on_data_without_one_stops_before_any_run(tmp_path) -> None:
    module = _load_script("accuracy.py")
    args = module.parse_args(_accuracy_split_args(tmp_path, "validation", validation=False))
    with pytest.raises(SystemExit, match=r"error: --split 'validation': the data source has no 'validation' split"):
        module.set_up(args)


@pytest.mark.parametrize(
    ("tables", "methods"),
    [
        (["table2"], ["linear", "single_prompt", "lora", "static_adapter", "puma", "full_finetune"]),
        (
            ["table3"],
            [
                "single_prompt",
                "conditional_prompt",
                "static_adapter",
                "stochastic_adapter",
                "single_prompt_static_adapter",
                "puma",
            ],
        ),
        (["sweep"], ["puma", "puma_p1"]),
    ],
    ids=["table2", "table3", "sweep"],
)
def test_accuracy_plan_trains_only_the_selected_tables(tables, methods) -> None:
    module = _load_script("accuracy.py")
    plan = module.Plan([0, 1], [0.5, 1.0], tuple(tables))
    assert [spec.name for spec in plan.runs] == [f"{m}_seed{s}" for s in (0, 1) for m in methods]


def test_accuracy_tables_table2_reports_table2_alone_with_the_full_runs_scores(accuracy, tmp_path, monkeypatch) -> None:
    """--tables table2 reads the same run folders (reused here, so nothing trains) and reports Table 2 and PUMA's
    differences to its rows, with no Table 3, sweep or sweep figure, and the same numbers as the full benchmark. Its
    retrieval examples sheet of the test split is a test read: a ledger line of its own."""
    ledger = tmp_path / "test_reads.jsonl"
    monkeypatch.setenv("PEFT_PUMA_TEST_READS", str(ledger))
    first, _ = accuracy
    folder = _accuracy_folder(accuracy)
    runs = tmp_path / "runs"
    shutil.copytree(folder / "runs", runs)
    output, figures = str(tmp_path / "table2.json"), tmp_path / "figures"
    args = [*_accuracy_args(folder, str(runs), output), "--tables", "table2", "--figure_dir", str(figures)]
    _run_script("accuracy.py", *args)
    with open(output, encoding="utf-8") as handle:
        result = json.load(handle)
    assert "table3" not in result and "keep_prob_sweep" not in result
    assert result["settings"]["tables"] == ["table2"] and result["settings"]["keep_probs"] == []
    table2_methods = ("linear", "single_prompt", "lora", "static_adapter", "puma", "full_finetune")
    assert sorted(result["runs"]) == sorted(f"{method}_seed0" for method in table2_methods)
    for name, row in first["table2"].items():
        assert {**result["table2"][name], "wall_s": None} == {**row, "wall_s": None}, name
    assert list(result["puma_minus"]) == [name for name in COST_METHODS if name != "puma"]
    assert "Table 3" not in result["markdown"] and "Keep-probability" not in result["markdown"]
    assert sorted(os.listdir(figures)) == ["prompt_weights.png", "retrieval_examples.png"]
    reads = [json.loads(line) for line in ledger.read_text().splitlines()]
    sheets = [read for read in reads if "the retrieval examples sheet" in read["scored"]]
    assert len(sheets) == 1 and sheets[0]["split"] == "test" and sheets[0]["backbone_fingerprint"]
    assert str(figures / "retrieval_examples.png") in sheets[0]["scored"]


def test_gate_forms_times_the_kept_rows_and_the_masked_form_of_one_model(tmp_path, monkeypatch) -> None:
    """The two forms compute the same function (so only their cost is compared), and one run reports both."""
    module = _load_script("gate_forms.py")
    tiny = sys.modules["cost_models"].SHAPES["tiny"]
    kept = module.puma_model(tiny, 8).train()
    masked = module.masked_form(copy.deepcopy(kept)).train()
    pixels = torch.randn(6, 3, tiny.image_size, tiny.image_size, generator=torch.Generator().manual_seed(0))
    results = []
    for model in (kept, masked):
        torch.manual_seed(3)  # the same gate draws in both forms
        model(pixel_values=pixels).embeddings.square().sum().backward()
        results.append({name: p.grad for name, p in model.named_parameters() if p.requires_grad})
    assert results[0].keys() == results[1].keys()
    for name, grad in results[0].items():
        torch.testing.assert_close(grad, results[1][name], rtol=1e-4, atol=1e-6, msg=name)
    monkeypatch.setitem(module.SETTINGS, "main_job", (tiny, 8, (4,), 10))
    output = tmp_path / "gate_forms.json"
    argv = ["--output", str(output), "--settings", "main_job", "--warmup", "0", "--repeats", "1", "--threads", "1"]
    assert module.main(argv) == 0
    (row,) = json.loads(output.read_text())["rows"]
    assert row["batch"] == 4 and set(row["step_wall_s"]) == {"kept_rows", "masked"}
    assert row["kept_over_masked_wall"] == row["step_wall_s"]["kept_rows"] / row["step_wall_s"]["masked"] > 0
    for form in ("kept_rows", "masked"):  # the memory probe a child process runs, here in this one
        probed = module.probe_memory(json.dumps({"setting": "main_job", "batch": 4, "form": form}))
        # a rise of the peak resident memory (cost_memory.peak_rise_mb): at this tiny shape, in a process that already
        # trained, freed pages may hold it all, so zero is a valid reading; the real probe runs in a fresh process
        assert set(probed) == {"above_mb"} and probed["above_mb"] >= 0
