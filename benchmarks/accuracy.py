"""Accuracy benchmark on UML-mini: PUMA, its baselines (Table 2), its ablations (Table 3) and a keep-probability sweep.

    python benchmarks/accuracy.py --output benchmarks/results/accuracy_uml_mini.json --figure_dir docs/figures

Every method is trained by the trainer itself (``peft_puma.training.train``) from one config file
(``configs/uml_mini.yaml`` by default: backbone, data, recipe) with the same epochs and seed(s); only ``method`` and,
for the sweep, ``puma.keep_prob`` change between runs. Runs that several tables share (``puma`` is Table 2's last row,
Table 3's last row and the sweep's p = 0.5) are trained once. The zero-shot row evaluates the frozen backbone with
``peft_puma.evaluate.evaluate_adapter(zero_shot=True)``. Model selection is the final epoch, as in the trainer.
Every score, the prompt weights and the retrieval examples are on the test split, or with ``--split validation`` on
the validation split (each run's ``eval_split``), so that a sweep that chooses a recipe never reads the test split.
With ``--reuse_finished`` a run whose folder (``--runs_dir``/NAME, e.g. ``puma_seed0``) already holds the trainer's
``results.json`` and a run file with the same recipe is read instead of trained: an interrupted benchmark continues,
and runs trained elsewhere (each under ``accelerate launch`` on several GPUs) are assembled into the tables.

``--tables`` trains and reports only some of the results (e.g. ``--tables table2``: the seven rows of Table 2, which at
the main job's length take a third of the whole benchmark's time).

Outputs: a JSON file with every run's per-domain R@1, unified and harmonic R@1, trainable parameters and wall time;
the Markdown tables printed (Table 2 shape, Table 3 shape, the sweep against domain size); with ``--figure_dir`` two
PNGs: R@1 per domain against the keep probability (domains ordered by training-set size), and the prompt-pool weights
of the trained PUMA averaged per domain over the scored split's images (the paper's Fig. 3).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from method_names import BENCHMARK_METHODS
from run_info import check_output, load_average, run_info
from script_options import add_option

from peft_puma.backbones.fingerprint import fingerprint_of
from peft_puma.backbones.loading import load_backbone
from peft_puma.cpu_threads import configure_torch_threads
from peft_puma.data.schema import DATASET_COLUMN
from peft_puma.data.schema import column_values as column
from peft_puma.data.transforms import make_eval_transform
from peft_puma.data.unified import SCORED_SPLITS, dataset_sizes, describe_source, load_unified, scored_split
from peft_puma.errors import ForeignContentError, IncompatibleCheckpointError, InvalidConfigError
from peft_puma.evaluate import evaluate_adapter
from peft_puma.evaluation.examples import write_retrieval_examples
from peft_puma.evaluation.test_reads import record_test_read
from peft_puma.inference.embedding import dataset_batch_loader, embed_split
from peft_puma.inference.loading import AdaptersOff, load_for_inference
from peft_puma.owned_paths import write_json_atomically
from peft_puma.runs.layout import RESULTS_FILE, RUN_LAYOUT
from peft_puma.runs.run_file import read_run_file
from peft_puma.runs.same_run import RunIdentity, finished_run_mismatch
from peft_puma.training import load_config, train
from peft_puma.training.methods import MethodOptions, build_model
from peft_puma.training.report import data_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TABLE2 = BENCHMARK_METHODS  # Table 2 rows
# Table 3 rows: (prompt, adapter) -> trainer method (PUMA presets).
TABLE3: dict[str, str] = {
    "single prompt": "single_prompt",
    "conditional prompt": "conditional_prompt",
    "static adapter": "static_adapter",
    "stochastic adapter": "stochastic_adapter",
    "single prompt + static adapter": "single_prompt_static_adapter",
    "conditional prompt + stochastic adapter (PUMA)": "puma",
}
KEEP_PROBS = (0.25, 0.5, 0.75, 1.0)
TABLES = ("table2", "table3", "sweep")  # what --tables may select; PUMA's own run is part of each


@dataclass(frozen=True)
class RunSpec:
    """One training run: a trainer method, its PUMA overrides beyond the config's, and a seed."""

    method: str
    seed: int
    keep_prob: float | None = None  # None: the method's own (PUMA's default 0.5, presets' fixed values)

    @property
    def name(self) -> str:
        suffix = "" if self.keep_prob is None else f"_p{self.keep_prob:g}"
        return f"{self.method}{suffix}_seed{self.seed}"


@dataclass
class Plan:
    """The runs of the benchmark, each once, in the order they are trained: those of the selected tables only (Table 2
    alone at the main job's length costs a third of the whole benchmark)."""

    seeds: list[int]
    keep_probs: list[float]  # the sweep's; emptied when the sweep is not selected
    tables: tuple[str, ...] = TABLES
    runs: list[RunSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        if "sweep" not in self.tables:
            self.keep_probs = []
        methods = [m for m in TABLE2.values() if m] if "table2" in self.tables else []
        methods += list(TABLE3.values()) if "table3" in self.tables else []
        methods.append("puma")  # every table's reference row; the prompt-weight figure reads it
        for seed in self.seeds:
            for method in dict.fromkeys(methods):
                self.runs.append(RunSpec(method, seed))
            for p in self.keep_probs:
                spec = self.sweep_spec(p, seed)
                if spec not in self.runs:
                    self.runs.append(spec)

    @staticmethod
    def sweep_spec(keep_prob: float, seed: int) -> RunSpec:
        """PUMA at keep probability ``p``; p = 0.5 is PUMA's default, i.e. the ``puma`` run itself."""
        return RunSpec("puma", seed) if keep_prob == 0.5 else RunSpec("puma", seed, keep_prob)


# ---------------------------------------------------------------------------------------------------- running
def base_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """What every run changes in the config file: the same epochs and schedule for all, no per-step extras."""
    overrides: dict[str, Any] = {
        "epochs": args.epochs,
        "lr_step_epochs": args.lr_step_epochs or max(1, args.epochs // 2),
        "report_to": [],
        "progress_bar": False,
        "save_every_steps": 0,  # one checkpoint at the end: the benchmark never resumes
        "eval_every_epochs": 0,
        "eval_ks": [1],
        "eval_split": args.split,
        "cpu_threads": args.threads,
    }
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.uml_mini_dir:
        overrides["uml_mini_dir"] = args.uml_mini_dir
    if args.dataset_path:
        overrides["dataset_path"] = args.dataset_path
        overrides["uml_mini_dir"] = None
    if args.batch_size:
        overrides["per_device_batch_size"] = args.batch_size
    return overrides


def run_config(spec: RunSpec, args: argparse.Namespace, runs_dir: str) -> Any:
    """The trainer config of one run: the benchmark's frozen config file, its common overrides, method and seed."""

    overrides = {**base_overrides(args), "output_dir": os.path.join(runs_dir, spec.name), "seed": spec.seed}
    if spec.keep_prob is not None:
        overrides["puma.keep_prob"] = spec.keep_prob
    return load_config(args.config, overrides, validate=False).for_method(spec.method).validate()


def train_run(spec: RunSpec, config: Any, keep_folder: bool = False) -> dict[str, Any]:
    """Train one run with the trainer and return its scores (and the trained model, for the prompt-weight figure).

    By default the run's folder is removed first when it holds a run the trainer wrote (a folder with anything else
    stops the benchmark, untouched); with ``keep_folder`` the trainer resumes
    from the folder's newest complete checkpoint, or starts afresh where there is none, and deletes nothing.
    """

    if keep_folder:
        config.resume = True
    else:
        try:
            RUN_LAYOUT.remove(config.output_dir)  # only a run folder the trainer wrote; never anything else
        except ForeignContentError as error:
            raise SystemExit(f"error: {error}") from None
    start = time.perf_counter()
    try:
        result = train(config)
    except IncompatibleCheckpointError as error:  # an unfinished run of another recipe or process count
        raise SystemExit(
            f"--reuse_finished: cannot continue the unfinished run in {config.output_dir}: {error} Move that folder "
            "away (or pass another --runs_dir) to train this run afresh."
        ) from None
    seconds = time.perf_counter() - start
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    return {
        "spec": spec.__dict__,
        "trainable_params": trainable,
        "steps": result.global_step,
        "final_loss": result.losses[-1] if result.losses else None,
        "wall_s": seconds,
        **scores(result.results),
        "_model": result.model,
        "_config": config,
    }


def finished_run(
    spec: RunSpec, config: Any, sizes: dict[str, dict[str, int]], weights: str | None
) -> dict[str, Any] | None:
    """The scores of a run that its folder already holds (trained earlier, here or elsewhere), or None.

    A folder that holds a finished run of another recipe (the rule of ``peft_puma.training.same_run``, the trainer's
    own for resuming, with the run's length compared too) stops the benchmark with the differences: training over it
    would destroy that run, and counting it would put another recipe in the table.
    """

    directory = config.output_dir
    run = read_run_file(directory)
    results_path = os.path.join(directory, RESULTS_FILE)
    if run is None or not os.path.isfile(results_path):
        return None
    _refuse_another_recipe(spec, run, config, sizes, weights)
    results = _read_results(results_path, directory)
    trainable = run.trainable_params
    if trainable is None:  # run files written before the count was recorded
        model = untrained_model(config)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "spec": spec.__dict__,
        "trainable_params": trainable,
        "steps": None,
        "final_loss": None,
        "wall_s": None,
        "reused_from": directory,
        **scores(results),
        "_config": config,
    }


def _refuse_another_recipe(
    spec: RunSpec, run: Any, config: Any, sizes: dict[str, dict[str, int]], weights: str | None
) -> None:
    """Stop when the finished run in ``config.output_dir`` is not the run this benchmark would train (in one
    process, on the data it loaded)."""

    details = finished_run_mismatch(run, RunIdentity(config.to_dict(), 1, sizes, weights), config.key_roles())
    if details:
        raise SystemExit(
            f"--reuse_finished: {config.output_dir} holds a finished {spec.name} run with another recipe ({details}). "
            "Move that folder away (or pass another --runs_dir), or rerun with the settings it was trained with."
        )


def _read_results(results_path: str, directory: str) -> dict[str, Any]:
    """A finished run's ``results.json``, which must hold per-dataset Recall@1 for the tables."""
    with open(results_path, encoding="utf-8") as handle:
        results = json.load(handle)
    if "recall@1" not in results.get("unified", {}) or "per_dataset" not in results:
        raise SystemExit(
            f"--reuse_finished: {results_path} has no per-dataset Recall@1 (evaluated with eval_ks without 1, or "
            "without dataset ids); evaluate that adapter again with `python -m peft_puma.evaluate --adapter "
            f"{directory} ... --output {results_path}`, or move the folder away to retrain it."
        )
    return results


def trained_model(run: dict[str, Any]) -> torch.nn.Module:
    """The run's model: kept from training, or loaded from the folder of a reused run."""
    if "_model" in run:
        return run["_model"]

    return load_for_inference(run["reused_from"], fuse=False)[0]  # the prompt-weight figure reads its pool


def zero_shot(args: argparse.Namespace) -> dict[str, Any]:
    """The frozen backbone's normalised CLS features, scored like every trained run (Table 2's first row)."""

    config = load_config(args.config, {**base_overrides(args), "output_dir": "unused"})
    data = {key: getattr(config, key) for key in ("dataset_path", "uml_mini_dir", "dataset_roots", "datasets")}
    data = {key: value for key, value in data.items() if value is not None}
    start = time.perf_counter()
    result = evaluate_adapter(
        None,
        data,
        backbone=config.backbone,
        backbone_format=config.backbone_format,
        zero_shot=True,
        ks=[1],
        progress=False,
        split=config.eval_split,
    )
    return {"spec": {"method": None, "seed": None}, "trainable_params": 0, "wall_s": time.perf_counter() - start,
            **scores(result)}  # fmt: skip


def scores(result: dict[str, Any]) -> dict[str, Any]:
    """R@1 (in %) per domain, unified and harmonic, from an ``evaluate_retrieval`` result."""
    return {
        "recall_at_1": {name: 100.0 * value["recall@1"] for name, value in result["per_dataset"].items()},
        "unified": 100.0 * result["unified"]["recall@1"],
        "harmonic": 100.0 * result["harmonic"]["recall@1"],
    }


# ---------------------------------------------------------------------------------------------------- prompt weights
@torch.no_grad()
def prompt_weights_by_domain(model: torch.nn.Module, config: Any, batch_size: int = 256) -> dict[str, list[float]]:
    """Mean prompt-pool weights ``w_m`` (docs/spec.md section 3, step 3) of the images of each domain in the scored
    split (``config.eval_split``), from the pool's own ``prompt_weights`` (PUMA's model API; only the backbone's
    embeddings run)."""

    scored = load_unified(config)[config.eval_split]
    _, processor = load_backbone(config.backbone, config.backbone_format)
    load_batch = dataset_batch_loader(scored, make_eval_transform(config.image_size, image_processor=processor))
    device = next(model.parameters()).device
    model.eval()
    batches = (
        list(range(start, min(start + batch_size, scored.num_rows))) for start in range(0, scored.num_rows, batch_size)
    )
    weights = torch.cat([model.prompt_weights(load_batch(rows).to(device)).cpu() for rows in batches])
    domains = column(scored, DATASET_COLUMN)
    result = {}
    for domain in dict.fromkeys(domains):
        rows = torch.tensor([i for i, d in enumerate(domains) if d == domain])
        result[domain] = weights[rows].mean(dim=0).tolist()
    return result


def untrained_model(config: Any) -> torch.nn.Module:
    """The run's method freshly initialised on its backbone (same builder and seed as the trainer), untrained."""

    torch.manual_seed(config.seed)
    backbone, _ = load_backbone(config.backbone, config.backbone_format)
    return build_model(config.method, backbone, MethodOptions.from_config(config)).eval()


# ---------------------------------------------------------------------------------------------------- tables
def stats(values: list[float]) -> dict[str, float]:
    """Mean and spread (sample standard deviation; 0 for one value), minimum and maximum."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (sample standard deviation; 0 for one seed) of the scores of one method over seeds."""
    domains = list(runs[0]["recall_at_1"])
    return {
        "seeds": [run["spec"]["seed"] for run in runs],
        "trainable_params": runs[0]["trainable_params"],
        "recall_at_1": {d: stats([run["recall_at_1"][d] for run in runs]) for d in domains},
        "unified": stats([run["unified"] for run in runs]),
        "harmonic": stats([run["harmonic"] for run in runs]),
        "wall_s": stats(walls) if (walls := [run["wall_s"] for run in runs if run["wall_s"] is not None]) else None,
    }


def puma_differences(
    seeds: list[int], runs: dict[RunSpec, dict[str, Any]], frozen: dict[str, Any]
) -> dict[str, dict[str, dict[str, float]]]:
    """PUMA minus every other row, unified and harmonic, paired by seed (the same seed gives both runs the same data
    order and initialisation), with the spread of those differences over seeds. A difference whose spread is as large
    as itself is noise; pairing removes the seed-to-seed variation both runs share, which unpaired means keep."""
    baselines: dict[str, list[dict[str, Any]]] = {"frozen": [frozen] * len(seeds)}
    seen: set[str] = set()  # Table 3's static adapter is Table 2's: one row
    for name, method in {**TABLE2, **TABLE3}.items():
        if method in (None, "puma") or method in seen:
            continue
        seen.add(method)
        specs = [RunSpec(method, seed) for seed in seeds]
        if all(spec in runs for spec in specs):
            baselines[name] = [runs[spec] for spec in specs]
    for keep_prob in sorted({spec.keep_prob for spec in runs if spec.keep_prob is not None}):
        baselines[f"PUMA at p = {keep_prob:g}"] = [runs[Plan.sweep_spec(keep_prob, seed)] for seed in seeds]
    puma = [runs[RunSpec("puma", seed)] for seed in seeds]
    return {
        name: {
            key: stats([mine[key] - theirs[key] for mine, theirs in zip(puma, others)])
            for key in ("unified", "harmonic")
        }
        for name, others in baselines.items()
    }


def differences_table(differences: dict[str, dict[str, dict[str, float]]]) -> str:
    """PUMA minus each row, as Markdown: mean ± std over seeds of the paired differences, in points."""
    lines = ["| PUMA minus | Unified | Harmonic |", "|---|---|---|"]
    for name, entry in differences.items():
        cells = [f"{entry[key]['mean']:+.1f} ± {entry[key]['std']:.1f}" for key in ("unified", "harmonic")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(entry: dict[str, float], spread: bool) -> str:
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}" if spread else f"{entry['mean']:.1f}"


def table(rows: dict[str, dict[str, Any]], domains: list[str], spread: bool, label: str = "method") -> str:
    """Markdown: per-domain R@1, unified, harmonic (mean ± std over seeds when several), trainable parameters."""
    lines = [
        f"| {label} | params | " + " | ".join(domains) + " | Unified | Harmonic |",
        "|---|---|" + "---|" * (len(domains) + 2),
    ]
    for name, row in rows.items():
        cells = [_cell(row["recall_at_1"][d], spread) for d in domains]
        cells += [_cell(row["unified"], spread), _cell(row["harmonic"], spread)]
        lines.append(f"| {name} | {row['trainable_params']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(
    sweep: dict[str, dict[str, Any]],
    frozen: dict[str, Any],
    domains: list[str],
    sizes: dict[str, dict[str, int]],
    spread: bool,
) -> str:
    """Markdown: R@1 per domain (columns ordered by training images, shown in the header) for the frozen backbone and
    each keep probability, so that a domain the gate helps or hurts is read against where it started."""
    ordered = sorted(domains, key=lambda d: sizes[d]["train_images"])
    header = [f"{d} ({sizes[d]['train_images']:,} img)" for d in ordered]
    lines = ["| p | " + " | ".join(header) + " | Unified | Harmonic |", "|---|" + "---|" * (len(ordered) + 2)]
    cells = [f"{frozen['recall_at_1'][d]:.1f}" for d in ordered] + [f"{frozen[k]:.1f}" for k in ("unified", "harmonic")]
    lines.append("| frozen (zero-shot) | " + " | ".join(cells) + " |")
    for p, row in sweep.items():
        cells = [_cell(row["recall_at_1"][d], spread) for d in ordered]
        cells += [_cell(row["unified"], spread), _cell(row["harmonic"], spread)]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- figures
def plot_sweep(sweep: dict[str, dict[str, Any]], sizes: dict[str, dict[str, int]], path: str, note: str) -> None:
    """Left: R@1 against p, one line per domain. Right: R@1 gain over the static adapter (p = 1) against domain size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = [float(p) for p in sweep]
    domains = sorted(next(iter(sweep.values()))["recall_at_1"], key=lambda d: sizes[d]["train_images"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for domain in domains:
        means = [sweep[p]["recall_at_1"][domain]["mean"] for p in sweep]
        left.plot(probs, means, marker="o", label=f"{domain} ({sizes[domain]['train_images']:,} train img)")
    left.plot(probs, [sweep[p]["unified"]["mean"] for p in sweep], "k-", marker="D", label="unified")
    left.plot(probs, [sweep[p]["harmonic"]["mean"] for p in sweep], "k--", marker="s", label="harmonic")
    left.set_xlabel("keep probability p")
    left.set_ylabel("Recall@1 (%)")
    left.set_xticks(probs)
    left.set_title("R@1 per domain against p")
    # below the axes: inside, the legend hides the lines that end highest at p = 1
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    reference = max(sweep, key=float)  # the largest p: at 1.0 every adapter is always on
    for p in sweep:
        if p == reference:
            continue
        gains = [sweep[p]["recall_at_1"][d]["mean"] - sweep[reference]["recall_at_1"][d]["mean"] for d in domains]
        right.plot(range(len(domains)), gains, marker="o", label=f"p = {p}")
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(range(len(domains)), [f"{d}\n{sizes[d]['train_images']:,}" for d in domains], fontsize=8)
    right.set_xlabel("domain, ordered by training images")
    right.set_ylabel(f"R@1 minus R@1 at p = {reference} (points)")
    right.set_title(f"gain over adapters always on (p = {reference}), by domain size")
    right.legend(fontsize=8)
    figure.suptitle(note, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_prompt_weights(weights: dict[str, list[float]], at_init: dict[str, list[float]], path: str, note: str) -> None:
    """Heat maps domains x prompts: the trained pool's mean weights, their deviation from the mean over domains, and
    the same deviation for the untrained pool (random keys already separate domains somewhat)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(weights)
    matrix = torch.tensor([weights[d] for d in domains])
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    initial = torch.tensor([at_init[d] for d in domains])
    initial_centred = initial - initial.mean(dim=0, keepdim=True)
    figure, axes = plt.subplots(3, 1, figsize=(11, 9.5))
    for axis, values, title in (
        (axes[0], matrix, "trained PUMA: mean prompt weight w_m per domain (test images)"),
        (axes[1], centred, "trained PUMA, minus the mean over domains: what each domain prefers"),
        (axes[2], initial_centred, "untrained pool (control), minus the mean over domains"),
    ):
        bound = float(values.abs().max()) or 1.0
        image = axis.imshow(values.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
        axis.set_yticks(range(len(domains)), domains)
        axis.set_xticks(range(matrix.shape[1]))
        axis.set_xlabel("prompt m")
        axis.set_title(title)
        figure.colorbar(image, ax=axis)
    figure.suptitle(note, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def prompt_preference_summary(weights: dict[str, list[float]]) -> dict[str, Any]:
    """Numbers behind the Fig. 3 question: how different are the domains' mean weight vectors?"""
    domains = list(weights)
    matrix = torch.tensor([weights[d] for d in domains])
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    cosine = torch.nn.functional.cosine_similarity(centred.unsqueeze(1), centred.unsqueeze(0), dim=-1)
    return {
        "top_prompt": {d: int(matrix[i].argmax()) for i, d in enumerate(domains)},
        "weight_range_across_prompts": {d: float(matrix[i].max() - matrix[i].min()) for i, d in enumerate(domains)},
        "between_domain_std_mean": float(matrix.std(dim=0).mean()),
        "centred_cosine": {
            d: {e: round(float(cosine[i, j]), 3) for j, e in enumerate(domains)} for i, d in enumerate(domains)
        },
    }


# ---------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    option = functools.partial(add_option, parser)
    option("--output", required=True, help="JSON file to write")
    option("--figure_dir", help="folder for the sweep and prompt-weight PNGs")
    option("--config", default=os.path.join(REPO, "configs", "uml_mini.yaml"), help="trainer config")
    option("--runs_dir", default=os.path.join(REPO, "runs", "benchmark_accuracy"), help="run folders")
    option(
        "--epochs",
        type=int,
        default=2,
        help="epochs of every run, the same for all methods (default 2, a quick look; the main job's recipe is 16: a "
        "sweep that chooses a setting should run at the length it will be trained at)",
    )
    option("--lr_step_epochs", type=int, help="lr x0.5 every this many epochs (default: epochs // 2)")
    option("--max_steps", type=int, help="stop every run after this many steps (smoke runs)")
    option("--batch_size", type=int, help="override per_device_batch_size of the config")
    option("--seeds", type=int, nargs="+", default=[0], help="one run per method and seed (default 0)")
    option("--threads", type=int, help="torch intra-op threads (default: the cores this process may use)")
    option(
        "--keep_probs",
        type=float,
        nargs="+",
        default=list(KEEP_PROBS),
        help=f"the sweep's keep probabilities (default {' '.join(f'{p:g}' for p in KEEP_PROBS)})",
    )
    option(
        "--tables",
        nargs="+",
        choices=TABLES,
        default=list(TABLES),
        help="which results to train and report (default: all): table2 (frozen, linear, prompt, LoRA, static adapter, "
        "PUMA, full fine-tuning), table3 (the prompt and adapter ablations), sweep (PUMA at --keep_probs)",
    )
    option("--backbone", help="override the config's backbone")
    option("--uml_mini_dir", help="override the config's uml_mini_dir")
    option(
        "--dataset_path",
        help="your own data instead of UML-mini, any source the trainer's --dataset_path reads: a folder of "
        "collections (<collection>/<class>/<image>), a saved DatasetDict or a Hub dataset id (docs/collections.md)",
    )
    option(
        "--split",
        choices=SCORED_SPLITS,
        default="test",
        help="split every run and the zero-shot row are scored on (each run's eval_split): test (default) or "
        "validation, for sweeps that choose a recipe",
    )
    option(
        "--reuse_finished",
        action="store_true",
        help="read the results of runs whose folder in --runs_dir already holds them with this recipe (an interrupted "
        "benchmark, or runs trained elsewhere, e.g. under accelerate launch) instead of training them again; "
        "unfinished runs resume from their newest complete checkpoint (or start afresh where there is none), and no "
        "folder is emptied",
    )
    return parser.parse_args(argv)


@dataclass
class Setup:
    """What every step of the benchmark reads: the arguments, the config (frozen into ``--runs_dir``), the data sizes
    it loads and the plan of runs."""

    args: argparse.Namespace
    config_source: str  # the config file given; ``args.config`` is its frozen copy
    config_text: str
    base_config: Any
    sizes: dict[str, dict[str, int]]
    plan: Plan
    weights: str | None  # the backbone's fingerprint, which reused runs must match (only with --reuse_finished)


def set_up(args: argparse.Namespace) -> Setup:
    """Every run reads one frozen copy of the config: the file may be edited while the benchmark runs, and a change
    half-way would give the methods different recipes. ``args.config`` is pointed at that copy."""

    config_source = args.config
    with open(config_source, encoding="utf-8") as handle:
        config_text = handle.read()
    os.makedirs(args.runs_dir, exist_ok=True)
    args.config = os.path.join(args.runs_dir, "benchmark_config.yaml")
    with open(args.config, "w", encoding="utf-8") as handle:
        handle.write(config_text)
    base_config = load_config(args.config, {**base_overrides(args), "output_dir": args.runs_dir})
    data = load_unified(base_config)
    try:
        scored_split(data, args.split, "--split")  # before any run trains
    except InvalidConfigError as error:
        raise SystemExit(f"error: {error}") from None
    sizes = dataset_sizes(data)
    plan = Plan(args.seeds, args.keep_probs, tuple(args.tables))
    weights = None
    if args.reuse_finished:
        weights = fingerprint_of(base_config.backbone, base_config.backbone_format)
    return Setup(args, config_source, config_text, base_config, sizes, plan, weights)


def settings(setup: Setup) -> dict[str, Any]:
    """The result's ``settings``: the config as given and as overridden, the data, seeds and runs."""
    args, config = setup.args, setup.base_config
    return {
        "config": os.path.relpath(setup.config_source, REPO),
        "config_text": setup.config_text,
        "overrides": base_overrides(args),
        "backbone": config.backbone,
        # Which weights and which data build every figure of the result is traceable to.
        "backbone_fingerprint": setup.weights or fingerprint_of(config.backbone, config.backbone_format),
        "data": config.uml_mini_dir or config.dataset_path,
        "data_source": describe_source(config),  # for UML-mini: its builder version, seed and scale
        "seeds": args.seeds,
        "tables": list(args.tables),
        "keep_probs": setup.plan.keep_probs,
        "runs": [spec.name for spec in setup.plan.runs],
        "model_selection": "final epoch",
        "split": args.split,
        "reuse_finished": args.reuse_finished,
    }


def run_all(setup: Setup, start: float) -> dict[RunSpec, dict[str, Any]]:
    """Every run of the plan, trained, or read where ``--reuse_finished`` finds it finished."""
    runs: dict[RunSpec, dict[str, Any]] = {}
    total = len(setup.plan.runs)
    for index, spec in enumerate(setup.plan.runs, 1):
        _progress(f"[{index}/{total}] {spec.name} ({time.perf_counter() - start:.0f} s)")
        runs[spec] = run_or_reuse(spec, setup)
        reused = f" (reused {runs[spec]['reused_from']})" if "reused_from" in runs[spec] else ""
        _progress(f"    unified {runs[spec]['unified']:.1f} harmonic {runs[spec]['harmonic']:.1f}{reused}")
    return runs


def run_or_reuse(spec: RunSpec, setup: Setup) -> dict[str, Any]:
    args = setup.args
    config = run_config(spec, args, args.runs_dir)
    reused = finished_run(spec, config, setup.sizes, setup.weights) if args.reuse_finished else None
    return reused or train_run(spec, config, keep_folder=args.reuse_finished)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def tables(setup: Setup, runs: dict[RunSpec, dict[str, Any]], frozen: dict[str, Any]) -> dict[str, Any]:
    """The selected ones of Table 2, Table 3 and the keep-probability sweep, each aggregated over the seeds, and PUMA
    minus every other row that was run."""
    seeds, selected = setup.args.seeds, setup.plan.tables

    def row(method: str | None) -> dict[str, Any]:
        return aggregate([frozen] if method is None else [runs[RunSpec(method, seed)] for seed in seeds])

    output: dict[str, Any] = {}
    if "table2" in selected:
        output["table2"] = {name: row(method) for name, method in TABLE2.items()}
    if "table3" in selected:
        output["table3"] = {name: row(method) for name, method in TABLE3.items()}
    output["puma_minus"] = puma_differences(seeds, runs, frozen)
    if "sweep" in selected:
        sweep = {f"{p:g}": aggregate([runs[Plan.sweep_spec(p, seed)] for seed in seeds]) for p in setup.plan.keep_probs}
        output["keep_prob_sweep"] = sweep
    return output


def prompt_weight_results(setup: Setup, runs: dict[RunSpec, dict[str, Any]]) -> dict[str, Any]:
    """The first seed's trained PUMA: its prompt weights per domain and their summary, beside the same for its
    untrained pool. Control: an untrained pool already weighs domains differently (its keys are random and the query
    is image statistics); what training adds to that is the question of the paper's Fig. 3."""
    puma_run = runs[RunSpec("puma", setup.args.seeds[0])]
    config = puma_run["_config"]
    trained = prompt_weights_by_domain(trained_model(puma_run), config)
    at_init = prompt_weights_by_domain(untrained_model(config), config)
    return {
        "prompt_weights": trained,
        "prompt_preference": prompt_preference_summary(trained),
        "prompt_weights_at_init": at_init,
        "prompt_preference_at_init": prompt_preference_summary(at_init),
    }


def _scored_data(output: dict[str, Any]) -> str:
    """The data the report and the figures name, as the model card names it (from the source the settings record)."""
    return data_name(output["settings"]["data_source"], output["domain_sizes"])


def markdown_report(setup: Setup, output: dict[str, Any]) -> str:
    """What the script prints: the three tables, the prompt-weight summary and the load."""
    args, sizes = setup.args, setup.sizes
    domains = list(output["zero_shot_run"]["recall_at_1"])
    spread = len(args.seeds) > 1
    preference, at_init = output["prompt_preference"], output["prompt_preference_at_init"]
    text = [
        f"R@1 (%) on {_scored_data(output)} ({args.split} split), {args.epochs} epochs, seeds {args.seeds}"
        + (" (mean ± std)" if spread else ""),
        "",
    ]
    if "table2" in output:
        text += ["Table 2 shape:", "", table(output["table2"], domains, spread), ""]
    if "table3" in output:
        text += [
            "Table 3 shape (ablations, same recipe):",
            "",
            table(output["table3"], domains, spread, "prompt / adapter"),
            "",
        ]
    text += [
        "PUMA minus each other row, paired by seed (points; mean ± std of the per-seed differences):",
        "",
        differences_table(output["puma_minus"]),
        "",
    ]
    if "keep_prob_sweep" in output:
        text += [
            "Keep-probability sweep (PUMA; domains ordered by training images):",
            "",
            sweep_table(output["keep_prob_sweep"], output["zero_shot_run"], domains, sizes, spread),
            "",
        ]
    text += [
        "Prompt-pool weights (Fig. 3): top prompt per domain "
        + ", ".join(f"{d} {m}" for d, m in preference["top_prompt"].items())
        + "; between-domain std of the mean weights, averaged over prompts: trained "
        f"{preference['between_domain_std_mean']:.4f}, untrained pool {at_init['between_domain_std_mean']:.4f}.",
        "",
        f"elapsed {output['elapsed_s']:.0f} s, load average start {output['load_average_start']}, "
        f"end {output['load_average_end']}",
    ]
    return "\n".join(text)


def write_retrieval_comparison(setup: Setup, runs: dict[RunSpec, dict[str, Any]], path: str) -> None:
    """The frozen backbone, full fine-tuning and PUMA of the first seed on the same seeded queries of the scored split,
    one row per query and model (``peft_puma.search.examples``). The frozen backbone is PUMA's model with its adapter
    off."""

    seed = setup.args.seeds[0]
    puma_run = runs[RunSpec("puma", seed)]
    config = puma_run["_config"]
    scored = load_unified(config)[config.eval_split]
    _, processor = load_backbone(config.backbone, config.backbone_format)
    transform = make_eval_transform(config.image_size, image_processor=processor)
    puma = trained_model(puma_run)
    models = {"frozen": AdaptersOff(puma), "full FT": trained_model(runs[RunSpec("full_finetune", seed)]), "PUMA": puma}
    embeddings = {name: embed_split(model.eval(), scored, transform, progress=False) for name, model in models.items()}
    write_retrieval_examples(path, embeddings, scored, seed=seed)
    # Looking at a test split's retrievals is a read of it, as a score is: on the ledger, without scores.
    record_test_read(
        config.eval_split,
        f"benchmarks/accuracy.py: the retrieval examples sheet {path} (frozen, full FT, PUMA; seed {seed})",
        {},
        data_source=describe_source(config),
        config=config.to_dict(),
        backbone=config.backbone,
        backbone_fingerprint=read_run_file(config.output_dir).backbone_fingerprint,
        adapter=os.path.abspath(config.output_dir),
    )


def write_figures(setup: Setup, output: dict[str, Any]) -> None:
    """The keep-probability sweep (when run) and the prompt-weight heat maps, into ``--figure_dir``."""
    args = setup.args
    os.makedirs(args.figure_dir, exist_ok=True)
    length = f"{args.max_steps} steps" if args.max_steps else f"{args.epochs} epochs"
    note = f"{_scored_data(output)}, {length}, "
    note += f"seeds {args.seeds} (means), {args.split} split, {output['date'][:10]}"
    if "keep_prob_sweep" in output:
        plot_sweep(output["keep_prob_sweep"], setup.sizes, os.path.join(args.figure_dir, "keep_prob_sweep.png"), note)
    plot_prompt_weights(
        output["prompt_weights"],
        output["prompt_weights_at_init"],
        os.path.join(args.figure_dir, "prompt_weights.png"),
        f"PUMA seed {args.seeds[0]}, {note}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check_output(args.output)  # before hours of training
    args.threads = args.threads or configure_torch_threads()
    torch.set_num_threads(args.threads)
    output: dict[str, Any] = {"benchmark": "accuracy", **run_info(args.threads)}
    setup = set_up(args)
    output["settings"] = settings(setup)
    output["domain_sizes"] = setup.sizes
    start = time.perf_counter()
    _progress(f"zero-shot evaluation, then {len(setup.plan.runs)} training runs")
    frozen = zero_shot(args)
    _progress(f"zero-shot ({args.split} split): unified {frozen['unified']:.1f}, harmonic {frozen['harmonic']:.1f}")
    runs = run_all(setup, start)
    output.update(tables(setup, runs, frozen))
    output.update(prompt_weight_results(setup, runs))
    output["runs"] = {spec.name: {k: v for k, v in run.items() if not k.startswith("_")} for spec, run in runs.items()}
    output["zero_shot_run"] = frozen
    output["elapsed_s"] = time.perf_counter() - start
    output["load_average_end"] = load_average()
    output["markdown"] = markdown_report(setup, output)
    write_json_atomically(args.output, output)
    if args.figure_dir:
        write_figures(setup, output)
        if "table2" in args.tables:  # full fine-tuning is a Table 2 row
            write_retrieval_comparison(setup, runs, os.path.join(args.figure_dir, "retrieval_examples.png"))
    print(output["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
