"""benchmarks/standin_spread.py: the gain over frozen per stand-in and its spreads, from result files alone."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOMAINS = ("fashion", "latin", "cyrillic", "greek", "numbers", "emoji")


def _script():
    spec = importlib.util.spec_from_file_location("standin_spread", REPO / "benchmarks" / "standin_spread.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["standin_spread"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _results(path: Path, recall: float) -> Path:
    """A results file of the trainer's shape, every domain at ``recall`` (a fraction)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "unified": {"recall@1": recall},
        "harmonic": {"recall@1": recall},
        "per_dataset": {domain: {"recall@1": recall} for domain in DOMAINS},
    }
    path.write_text(json.dumps(record))
    return path


def _standin(script, root: Path, training_seed: int, frozen: float, puma: dict[int, float]):
    backbone = root / f"backbone{training_seed}"
    backbone.mkdir()
    record = {"zero_shot_recall_at_1": {"pretrained": {"unified": 50.0}}, "pretraining": {"seconds": 1.0}}
    (backbone / "pretraining.json").write_text(json.dumps(record))
    runs = {
        seed: _results(root / f"runs{training_seed}" / f"seed{seed}" / "results.json", r) for seed, r in puma.items()
    }
    return script.StandIn(training_seed, backbone, _results(backbone / "frozen_test.json", frozen), runs)


def test_the_gain_is_spread_over_stand_ins_at_one_seed_and_over_seeds_on_one_stand_in(tmp_path):
    script = _script()
    standins = [
        _standin(script, tmp_path, 0, 0.40, {0: 0.46, 1: 0.45, 2: 0.47}),
        _standin(script, tmp_path, 1, 0.42, {0: 0.45}),
        _standin(script, tmp_path, 2, 0.38, {0: 0.47}),
    ]
    result = script.spread(standins, fine_tuning_seed=0)
    gains = [6.0, 3.0, 9.0]
    assert [row["gain"][0]["unified"] for row in result["standins"]] == pytest.approx(gains)
    assert result["standin_spread"]["unified"]["mean"] == pytest.approx(6.0)
    assert result["standin_spread"]["unified"]["std"] == pytest.approx(3.0)
    fine_tuning = result["standins"][0]["fine_tuning_spread"]["harmonic"]
    assert fine_tuning["mean"] == pytest.approx(6.0) and fine_tuning["std"] == pytest.approx(1.0)
    assert result["standins"][1]["fine_tuning_spread"] is None  # one seed: no spread to state
    table = script.markdown(result)
    assert "| over the 3 stand-ins (fine-tuning seed 0) | +6.0 ± 3.0 |" in table
    assert "| over fine-tuning seeds 0, 1, 2 (stand-in 0) | +6.0 ± 1.0 |" in table


def test_no_spread_over_stand_ins_is_stated_while_one_lacks_the_seed(tmp_path):
    script = _script()
    standins = [_standin(script, tmp_path, 0, 0.40, {0: 0.46}), _standin(script, tmp_path, 1, 0.42, {})]
    assert script.spread(standins, fine_tuning_seed=0)["standin_spread"] is None


@pytest.mark.skipif(
    not (REPO / "benchmarks" / "results" / "standin_spread" / "spread.json").exists(), reason="no committed spread"
)
def test_the_committed_spread_file_is_what_the_script_reads_from_the_committed_results():
    script = _script()
    committed = json.loads((REPO / "benchmarks" / "results" / "standin_spread" / "spread.json").read_text())
    assert json.loads(json.dumps(script.spread(script.committed_standins()))) == committed
    assert len(committed["standins"]) == 3 and committed["standin_spread"] is not None
    assert os.path.isdir(REPO / committed["standins"][1]["backbone"])
