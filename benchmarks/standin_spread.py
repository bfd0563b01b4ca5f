"""The stand-in's own spread: PUMA's gain over the frozen backbone on stand-ins pretrained by one procedure with other
pretraining draws, beside the spread over fine-tuning seeds on one of them (docs/benchmarks.md, "How far the headline
moves with the stand-in").

    python benchmarks/standin_spread.py --output benchmarks/results/standin_spread/spread.json

Reads only committed result files (no training, no test read): for each stand-in its ``pretraining.json`` (the
zero-shot record on the validation split), its frozen row (``evaluate --zero_shot --output``) and the main job's
``results.json`` at each fine-tuning seed run on it. The committed stand-in is training seed 0; its files are the main
job's (``benchmarks/results/uml_mini_main_job/``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peft_puma.owned_paths import write_json_atomically

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DOMAINS = ("fashion", "latin", "cyrillic", "greek", "numbers", "emoji")
COLUMNS = (*DOMAINS, "unified", "harmonic")


@dataclass(frozen=True)
class StandIn:
    """One stand-in backbone and the committed files of the runs on it."""

    training_seed: int
    backbone: Path
    frozen: Path
    runs: dict[int, Path]  # fine-tuning seed -> the run's results.json


def committed_standins(results: Path = RESULTS) -> list[StandIn]:
    """The three stand-ins of the spread's decision record (docs/research/decisions.md, 2026-12-07)."""
    main_job = results / "uml_mini_main_job"
    standins = [
        StandIn(
            0,
            REPO / "assets" / "uml_mini_vit",
            main_job / "frozen_test.json",
            {seed: main_job / f"seed{seed}" / "results.json" for seed in range(3)},
        )
    ]
    for seed in (1, 2):
        folder = results / "standin_spread" / f"training_seed{seed}"
        runs = {
            int(path.parent.name.removeprefix("seed")): path
            for path in sorted(
                (results / "standin_spread" / f"main_job_training_seed{seed}").glob("seed*/results.json")
            )
        }
        standins.append(StandIn(seed, folder, folder / "frozen_test.json", runs))
    return standins


def recall_row(path: Path) -> dict[str, float]:
    """Recall@1 (%) per domain, unified and harmonic, of a results file (the trainer's or ``evaluate --output``)."""
    record = json.loads(path.read_text(encoding="utf-8"))
    row = {domain: 100 * record["per_dataset"][domain]["recall@1"] for domain in DOMAINS}
    row["unified"] = 100 * record["unified"]["recall@1"]
    harmonic = record["harmonic"]
    row["harmonic"] = 100 * (harmonic["recall@1"] if isinstance(harmonic, dict) else harmonic)
    return row


def spread(standins: Sequence[StandIn], fine_tuning_seed: int = 0) -> dict:
    """Per stand-in its zero-shot validation record, frozen test row, PUMA's rows and gains; the gain's mean and
    standard deviation over stand-ins at ``fine_tuning_seed``, and over fine-tuning seeds on each stand-in that has
    several."""
    rows = []
    for standin in standins:
        pretraining = json.loads((standin.backbone / "pretraining.json").read_text(encoding="utf-8"))
        frozen = recall_row(standin.frozen)
        runs = {seed: recall_row(path) for seed, path in sorted(standin.runs.items())}
        gains = {seed: {c: run[c] - frozen[c] for c in COLUMNS} for seed, run in runs.items()}
        rows.append(
            {
                "training_seed": standin.training_seed,
                "backbone": os.path.relpath(standin.backbone, REPO),
                "zero_shot_validation": pretraining["zero_shot_recall_at_1"],
                "pretraining_seconds": pretraining["pretraining"]["seconds"],
                "frozen_test": frozen,
                "puma_test": runs,
                "gain": gains,
                "fine_tuning_spread": _mean_std(list(gains.values())) if len(gains) > 1 else None,
            }
        )
    at_seed = [row["gain"][fine_tuning_seed] for row in rows if fine_tuning_seed in row["gain"]]
    return {
        "benchmark": "standin_spread",
        "fine_tuning_seed": fine_tuning_seed,
        "standins": rows,
        "standin_spread": _mean_std(at_seed) if len(at_seed) == len(rows) else None,
    }


def _mean_std(gains: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        c: {"mean": statistics.mean(g[c] for g in gains), "std": statistics.stdev(g[c] for g in gains)} for c in COLUMNS
    }


def markdown(result: dict) -> str:
    """The tables of docs/benchmarks.md: each stand-in's frozen and PUMA rows at the fine-tuning seed, and the gains'
    spreads."""
    seed = result["fine_tuning_seed"]
    lines = [
        f"| stand-in (training seed) | row | {' | '.join(COLUMNS)} |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in result["standins"]:
        name = f"{row['training_seed']}" + (" (committed)" if row["training_seed"] == 0 else "")
        lines.append(f"| {name} | frozen | " + " | ".join(f"{row['frozen_test'][c]:.1f}" for c in COLUMNS) + " |")
        lines.append(
            f"| | PUMA, seed {seed} | " + " | ".join(f"{row['puma_test'][seed][c]:.1f}" for c in COLUMNS) + " |"
        )
        lines.append("| | gain | " + " | ".join(f"{row['gain'][seed][c]:+.1f}" for c in COLUMNS) + " |")
    lines += ["", f"| gain over frozen | {' | '.join(COLUMNS)} |", "|---|" + "---|" * len(COLUMNS)]
    if result["standin_spread"]:
        label = f"over the {len(result['standins'])} stand-ins (fine-tuning seed {seed})"
        lines.append(f"| {label} | " + _spread_cells(result["standin_spread"]) + " |")
    for row in result["standins"]:
        if row["fine_tuning_spread"]:
            label = f"over fine-tuning seeds {', '.join(map(str, row['gain']))} (stand-in {row['training_seed']})"
            lines.append(f"| {label} | " + _spread_cells(row["fine_tuning_spread"]) + " |")
    return "\n".join(lines)


def _spread_cells(spread_row: dict[str, dict[str, float]]) -> str:
    return " | ".join(f"{spread_row[c]['mean']:+.1f} ± {spread_row[c]['std']:.1f}" for c in COLUMNS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="JSON file to write (default: print only)")
    parser.add_argument("--fine_tuning_seed", type=int, default=0, help="the seed the stand-ins are compared at")
    args = parser.parse_args(argv)
    result = spread(committed_standins(), args.fine_tuning_seed)
    if args.output:
        write_json_atomically(args.output, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
