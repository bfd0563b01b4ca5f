"""Why training does or does not beat the frozen backbone on UML-mini: five measurements, none on the test split.

    python benchmarks/diagnosis.py colour --uml_mini_dir data/uml_mini --adapter runs/diagnosis/unified \
        --output benchmarks/results/diagnosis_colour.json
    python benchmarks/diagnosis.py fit --adapter runs/diagnosis/unified --output benchmarks/results/diagnosis_fit.json
    python benchmarks/diagnosis.py domains --config configs/uml_mini.yaml --runs_dir runs/diagnosis/alone \
        --unified runs/diagnosis/unified --frozen frozen_validation.json \
        --output benchmarks/results/diagnosis_domains.json
    python benchmarks/diagnosis.py curves --run runs/diagnosis/unified --zero_shot frozen_validation.json \
        --figure docs/figures/learning_curves.png
    python benchmarks/diagnosis.py misses --adapter runs/diagnosis/unified \
        --output benchmarks/results/diagnosis_misses.json

(``frozen_validation.json``: ``python -m peft_puma.evaluate --zero_shot --split validation --output ...``; the
unified run: ``python -m peft_puma.train ... --eval_split validation``. docs/benchmarks.md, "Diagnosis", has the
exact commands behind its figures.)

- ``colour``: the glyph domains draw every letter in random foreground and background colours, so colour is a
  nuisance there. For the frozen backbone (and each ``--adapter``) it scores the glyph rows of the validation split
  as rendered and with the colour removed (each image turned into dark ink on white, from its distance to the
  background colour), and how close in background colour a query's nearest neighbour is compared with a random image
  of its domain. A large gain from removing colour, and neighbours much closer in colour than chance, mean that
  colour, not shape, decides what is retrieved.
- ``fit``: whether training fitted its own training classes at all: Recall@1 among the *training* rows of each domain
  (leave-one-out), for the frozen backbone and each ``--adapter``. A model that does not retrieve its own training
  classes better than the frozen backbone is under-trained, whatever it does on unseen classes.
- ``domains``: the paper's motivation (arXiv 2309.08944, Sec. 1 and Fig. 1): one model per domain against one
  unified model. Each domain is trained alone with the config's recipe (``datasets: [name]``) and scored on its own
  validation rows; the unified run's per-domain scores sit beside them (the per-domain Recall@1 of a unified run is
  also measured in that domain's own gallery, so the two are comparable).
- ``misses``: where a unified query's nearest neighbour lands when it is wrong: in the query's own domain, or in
  another one, and which (for the frozen backbone and each ``--adapter``, on the validation split in the one shared
  gallery of unified Recall@1). Latin, Cyrillic and Greek share letters that are drawn alike (A, Е, Η), so some of
  unified Recall@1's misses are a look-alike from another script that no embedding of the image alone can avoid.
- ``curves``: a run's learning curves from its ``train_log.jsonl``: the training loss per epoch and the validation
  Recall@1 of every domain at each evaluated epoch (``eval_every_epochs``), with the frozen backbone's scores as
  dashed lines.

Nothing here reads the test split (``fit`` reads the training rows, the others the validation rows): these
measurements choose the recipe (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from run_info import check_output, run_info

from peft_puma.backbones.fingerprint import fingerprint_of
from peft_puma.cpu_threads import configure_torch_threads
from peft_puma.data import make_eval_transform
from peft_puma.data.schema import (
    DATASET_COLUMN,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    PIXEL_VALUES,
    ROLE_COLUMN,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
    column_values,
)
from peft_puma.data.uml_mini import DOMAINS, open_uml_mini
from peft_puma.errors import PUMAError
from peft_puma.evaluation import evaluate_retrieval, unified_top1_rows
from peft_puma.evaluation.inputs import as_labels, global_labels
from peft_puma.inference import embed_images, embed_split
from peft_puma.inference.loading import check_adapter_source, load_for_inference
from peft_puma.owned_paths import write_json_atomically
from peft_puma.runs.run_file import read_run_file
from peft_puma.runs.same_run import RunIdentity, finished_run_mismatch
from peft_puma.training import load_config, train

GLYPH_DOMAINS: tuple[str, ...] = ("latin", "cyrillic", "greek")


# ------------------------------------------------------------------------------------------------------------ colour
def background_colours(images: np.ndarray) -> np.ndarray:
    """``(N, 3)`` background colour of each ``(N, H, W, 3)`` image: the median of its border pixels (the renderer fills
    the canvas with the background and draws the letter inside it)."""
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    return np.median(border, axis=1)


def remove_colour(images: np.ndarray) -> np.ndarray:
    """Dark ink on white: each pixel's darkness is its colour distance to the image's background colour, scaled so
    the farthest pixel is black. Shape survives; the foreground and background colours do not."""
    distance = np.linalg.norm(images - background_colours(images)[:, None, None], axis=-1)
    ink = distance / np.maximum(distance.max(axis=(1, 2), keepdims=True), 1e-6)
    grey = (255 * (1 - ink)).round().clip(0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _embed(model: torch.nn.Module, transform: Any, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Embeddings of images held as arrays (the colour-removed copies exist in no dataset)."""

    def load_batch(rows: list[int]) -> torch.Tensor:
        return transform({IMAGE_COLUMN: [Image.fromarray(images[row]) for row in rows]})[PIXEL_VALUES]

    return embed_images(model, len(images), load_batch, batch_size=batch_size, progress=False)


def colour_reliance(embeddings: torch.Tensor, domains: Sequence[str], background: np.ndarray, seed: int = 0) -> float:
    """Mean background-colour distance of each query's nearest neighbour in its own domain, divided by that of a
    random image of its domain: 1 means colour plays no part in what is retrieved, near 0 that it decides it."""
    normalised = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    similarity = normalised @ normalised.T
    names = np.asarray(domains)
    same_domain = torch.from_numpy(names[:, None] == names[None, :])
    similarity.masked_fill_(~same_domain, -3.0).fill_diagonal_(-3.0)
    nearest = similarity.argmax(dim=1).numpy()
    rng = np.random.default_rng(seed)
    others = [np.flatnonzero((names == name) & (np.arange(len(names)) != i)) for i, name in enumerate(names)]
    random_pick = np.array([rng.choice(pool) for pool in others])
    to_nearest = np.linalg.norm(background - background[nearest], axis=1).mean()
    to_random = np.linalg.norm(background - background[random_pick], axis=1).mean()
    return float(to_nearest / to_random)


def colour_measurement(args: argparse.Namespace) -> dict[str, Any]:
    """Per model: each glyph domain's validation Recall@1 as rendered and with the colour removed, and the colour
    reliance of its nearest neighbours; the gap between the two Recalls is what colour costs that model."""

    validation = open_uml_mini(args.uml_mini_dir)[0][VALIDATION_SPLIT]
    rows = [i for i, name in enumerate(column_values(validation, DATASET_COLUMN)) if name in GLYPH_DOMAINS]
    glyphs = validation.select(rows)
    labels, domains = column_values(glyphs, LABEL_COLUMN), column_values(glyphs, DATASET_COLUMN)
    images = glyphs[IMAGE_COLUMN]
    rendered = np.stack([np.asarray(image.convert("RGB")) for image in images])  # uint8, as stored
    variants = {"as rendered": rendered, "colour removed": remove_colour(rendered.astype(np.float32))}
    background = background_colours(rendered.astype(np.float32))
    models = {"frozen": (None, True), **{adapter: (adapter, False) for adapter in args.adapter}}
    table: dict[str, Any] = {}
    for name, (adapter, zero_shot) in models.items():
        model, processor, image_size = load_for_inference(adapter, args.backbone, zero_shot=zero_shot, fuse=False)
        transform = make_eval_transform(image_size, image_processor=processor)
        entry: dict[str, Any] = {}
        for variant, images in variants.items():
            embeddings = _embed(model, transform, images)
            result = evaluate_retrieval(embeddings, labels, domains, ks=(1,))
            entry[variant] = {d: 100 * s["recall@1"] for d, s in result["per_dataset"].items()}
            if variant == "as rendered":
                entry["colour_reliance"] = colour_reliance(embeddings, domains, background)
        table[name] = entry
        print(f"{name}: {json.dumps(entry)}", flush=True)
    return {"split": VALIDATION_SPLIT, "rows": len(rows), "models": table}


def colour_markdown(output: dict[str, Any]) -> str:
    """The colour table as docs/benchmarks.md shows it."""
    header = "| model | " + " | ".join(f"{d} as rendered | {d} colour removed" for d in GLYPH_DOMAINS)
    lines = [header + " | colour reliance |", "|---" * (2 * len(GLYPH_DOMAINS) + 2) + "|"]
    for name, entry in output["models"].items():
        cells = [f"{entry[v][d]:.1f}" for d in GLYPH_DOMAINS for v in ("as rendered", "colour removed")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {entry['colour_reliance']:.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------- fit
def fit_measurement(args: argparse.Namespace) -> dict[str, Any]:
    """Per model: Recall@1 among each domain's training rows, every row query and gallery at once. Training that
    does not lift this above the frozen backbone has not fitted the classes it saw."""

    train = open_uml_mini(args.uml_mini_dir)[0][TRAIN_SPLIT]
    names = column_values(train, DATASET_COLUMN)
    unknown = sorted(set(args.datasets or ()) - set(names))
    if unknown:
        raise SystemExit(f"error: --datasets {unknown} are not UML-mini domains; they are {list(dict.fromkeys(names))}")
    rows = train.select([i for i, name in enumerate(names) if not args.datasets or name in args.datasets])
    labels, domains = column_values(rows, LABEL_COLUMN), column_values(rows, DATASET_COLUMN)
    table: dict[str, dict[str, float]] = {}
    for name, adapter in [("frozen", None), *((adapter, adapter) for adapter in args.adapter)]:
        model, processor, image_size = load_for_inference(adapter, args.backbone, zero_shot=adapter is None, fuse=False)
        transform = make_eval_transform(image_size, image_processor=processor)
        embeddings = embed_split(model, rows, transform, progress=False)
        result = evaluate_retrieval(embeddings, labels, domains, ks=(1,))  # every training row is query and gallery
        table[name] = {domain: 100 * s["recall@1"] for domain, s in result["per_dataset"].items()}
        print(f"{name}: {json.dumps(table[name])}", flush=True)
    return {"split": TRAIN_SPLIT, "rows": rows.num_rows, "models": table}


def fit_markdown(output: dict[str, Any]) -> str:
    """The fit table as docs/benchmarks.md shows it."""
    domains = list(next(iter(output["models"].values())))
    lines = ["| model | " + " | ".join(domains) + " |", "|---" * (len(domains) + 1) + "|"]
    for name, row in output["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[d]:.1f}" for d in domains) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------ misses
def nearest_neighbour_domains(
    embeddings: torch.Tensor,
    labels: Sequence[int],
    domains: Sequence[str],
    roles: Sequence[str],
    class_names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Where each unified query's top-1 neighbour lands: the queries, the hits, the misses counted by
    ``{query domain: {neighbour domain: count}}``, and the misses into another domain counted by class pair
    (``"latin:j -> cyrillic:ј"``, most frequent first; ``class_names`` maps a label, as a string, to such a name, as
    UML-mini's manifest does; without it a class is ``domain:label``).

    The search is unified Recall@1's (``peft_puma.evaluation.evaluate_retrieval``), planned and run by the same
    pieces: every query against the one shared gallery, cosine similarity, the query never its own neighbour, exact
    ties broken by row order, a class unique per ``(domain, label)``, and queries without another gallery row of their
    class left out. ``hits / queries`` is therefore its unified Recall@1, which the tests pin.
    """
    query_rows, neighbour_rows = unified_top1_rows(embeddings, labels, domains, roles)
    classes = global_labels(as_labels(labels, len(domains)), domains)  # one class per (domain, label), as searched
    names = np.asarray(domains, dtype=object)
    misses: dict[str, dict[str, int]] = {}
    pairs: Counter[str] = Counter()
    hits = 0
    for query, neighbour in zip(query_rows.tolist(), neighbour_rows.tolist()):
        if classes[query] == classes[neighbour]:
            hits += 1
            continue
        by_domain = misses.setdefault(names[query], {})
        by_domain[names[neighbour]] = by_domain.get(names[neighbour], 0) + 1
        if names[query] != names[neighbour]:
            pairs[f"{_class_name(query, labels, domains, class_names)} -> "
                  f"{_class_name(neighbour, labels, domains, class_names)}"] += 1  # fmt: skip
    return {
        "queries": len(query_rows),
        "hits": hits,
        "misses": misses,
        "cross_domain_pairs": dict(pairs.most_common()),
    }


def _class_name(row: int, labels: Sequence[int], domains: Sequence[str], class_names: dict[str, str] | None) -> str:
    """A row's class as people read it: UML-mini's name (``latin:j``) where known, else ``domain:label``."""
    label = int(labels[row])
    return class_names.get(str(label), f"{domains[row]}:{label}") if class_names else f"{domains[row]}:{label}"


def misses_measurement(args: argparse.Namespace) -> dict[str, Any]:
    """Per model: the unified top-1 neighbours of the validation split, split into hits, misses in the query's own
    domain and misses in another domain."""

    dataset, manifest = open_uml_mini(args.uml_mini_dir)
    validation = dataset[VALIDATION_SPLIT]
    labels, domains = column_values(validation, LABEL_COLUMN), column_values(validation, DATASET_COLUMN)
    roles = column_values(validation, ROLE_COLUMN)
    table: dict[str, Any] = {}
    for name, adapter in [("frozen", None), *((adapter, adapter) for adapter in args.adapter)]:
        model, processor, image_size = load_for_inference(adapter, args.backbone, zero_shot=adapter is None, fuse=False)
        transform = make_eval_transform(image_size, image_processor=processor)
        embeddings = embed_split(model, validation, transform, progress=False)
        table[name] = nearest_neighbour_domains(embeddings, labels, domains, roles, manifest.get("class_names"))
        print(f"{name}: {json.dumps(table[name])}", flush=True)
    return {"split": VALIDATION_SPLIT, "rows": validation.num_rows, "models": table}


def misses_markdown(output: dict[str, Any]) -> str:
    """The misses table as docs/benchmarks.md shows it: counts, and in brackets points of unified Recall@1."""
    lines = [
        "| model | unified R@1 | misses | in the query's own domain | in another domain | of which between "
        + ", ".join(GLYPH_DOMAINS) + " |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, entry in output["models"].items():
        queries = entry["queries"]
        own = sum(by.get(domain, 0) for domain, by in entry["misses"].items())
        total = sum(sum(by.values()) for by in entry["misses"].values())
        scripts = sum(
            count
            for domain, by in entry["misses"].items()
            if domain in GLYPH_DOMAINS
            for other, count in by.items()
            if other in GLYPH_DOMAINS and other != domain
        )
        cells = [f"{count} ({100 * count / queries:.1f})" for count in (total, own, total - own, scripts)]
        lines.append(f"| {name} | {100 * entry['hits'] / queries:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------- domains
def read_validation_results(run: str) -> dict[str, Any]:
    """A finished run's ``results.json``, which must score the validation split: a test score must never enter a
    diagnosis that chooses a recipe."""
    path = os.path.join(run, "results.json")
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {path} cannot be read ({error}); give a finished training run") from None
    if result.get("split") != VALIDATION_SPLIT:
        raise SystemExit(
            f"error: {run} was scored on the {result.get('split')!r} split; train it with --eval_split validation"
        )
    return result


def _finished_run_of(config: Any, weights: str) -> bool:
    """Whether ``config.output_dir`` holds a finished run of ``config``'s recipe. A finished run of another recipe
    stops the command with the differences, by the trainer's own same-run rule (``peft_puma.training.same_run``);
    ``weights``: the fingerprint of the backbone this command would train on."""

    folder = config.output_dir
    record = read_run_file(folder)
    if record is None or not os.path.isfile(os.path.join(folder, "results.json")):
        return False
    details = finished_run_mismatch(
        record, RunIdentity(config.to_dict(), backbone_fingerprint=weights), config.key_roles()
    )
    if details:
        raise SystemExit(f"error: {folder} holds a run with another recipe ({details}); move it away or choose another "
                         "--runs_dir")  # fmt: skip
    return True


def domain_runs(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or, with ``--reuse_finished``, read) each domain alone on the config's recipe; set the unified run's
    per-domain scores beside them. The unified run is checked first, before hours of training."""

    unified_result = read_validation_results(args.unified)
    frozen = read_frozen(args.frozen)
    alone: dict[str, Any] = {}
    weights = ""
    if args.reuse_finished:  # every domain's run trains on the config's one backbone
        base = load_config(args.config, {"output_dir": args.runs_dir})
        weights = fingerprint_of(base.backbone, base.backbone_format)
    for domain in DOMAINS:
        folder = os.path.join(args.runs_dir, domain.name)
        overrides = {
            "output_dir": folder,
            "datasets": [domain.name],
            "eval_split": VALIDATION_SPLIT,
            "progress_bar": False,
            "report_to": [],
            "save_every_steps": 0,
            **{key: getattr(args, key) for key in ("epochs", "lr_step_epochs") if getattr(args, key)},
        }
        config = load_config(args.config, overrides)
        if args.reuse_finished and _finished_run_of(config, weights):
            result = read_validation_results(folder)
        else:
            result = train(config).results
        alone[domain.name] = 100 * result["per_dataset"][domain.name]["recall@1"]
        print(f"{domain.name} alone: {alone[domain.name]:.1f}", flush=True)
    return {
        "split": VALIDATION_SPLIT,
        "config": args.config,
        "epochs": args.epochs,
        "lr_step_epochs": args.lr_step_epochs,
        "frozen": frozen,
        "alone": alone,
        "unified": {name: 100 * s["recall@1"] for name, s in unified_result["per_dataset"].items()},
        "unified_run": args.unified,
    }


def domains_markdown(output: dict[str, Any]) -> str:
    """The domains table as docs/benchmarks.md shows it (the frozen column where ``--frozen`` was given)."""
    frozen = output.get("frozen")
    lines = ["| domain | frozen | trained alone | trained unified |", "|---|---|---|---|"]
    for name, value in output["alone"].items():
        base = f"{frozen[name]:.1f}" if frozen else "-"
        lines.append(f"| {name} | {base} | {value:.1f} | {output['unified'][name]:.1f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------ curves
def read_curves(run: str) -> dict[str, Any]:
    """Per-epoch training loss and per-domain validation Recall@1 (percent) from a run's ``train_log.jsonl``."""
    epoch_loss: dict[int, float] = {}
    validation: dict[int, dict[str, float]] = {}
    path = os.path.join(run, "train_log.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} does not exist; give the output_dir of a training run")
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:  # the last line of a run killed while writing it
                continue
            if "train/epoch_loss" in entry:
                epoch_loss[int(entry["epoch"])] = float(entry["train/epoch_loss"])
            if entry.get("split") == VALIDATION_SPLIT:
                scores = {
                    key.split("/")[1]: 100 * value
                    for key, value in entry.items()
                    if key.startswith("validation/") and key.endswith("/recall@1")
                }
                validation[int(entry["epoch"])] = scores
    if not validation:
        raise SystemExit(f"error: {run}/train_log.jsonl has no validation evaluation; train with eval_every_epochs: 1")
    return {"epoch_loss": epoch_loss, "validation": validation}


def plot_curves(curves: dict[str, Any], frozen: dict[str, float] | None, path: str, note: str) -> None:
    """Loss on the left; validation Recall@1 per domain on the right, each over its frozen score as a dashed line, so
    that a domain training lifts and one it drags down read apart at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, recall_axis) = plt.subplots(1, 2, figsize=(12, 4.2))
    epochs = sorted(curves["epoch_loss"])
    loss_axis.plot(epochs, [curves["epoch_loss"][e] for e in epochs], marker="o")
    loss_axis.set(xlabel="epoch", ylabel="mean training loss", title="Training loss")
    evaluated = sorted(curves["validation"])
    names = list(curves["validation"][evaluated[-1]])
    for index, name in enumerate(names):
        colour = f"C{index}"
        recall_axis.plot(evaluated, [curves["validation"][e][name] for e in evaluated], marker="o", color=colour,
                         label=name)  # fmt: skip
        if frozen and name in frozen:
            recall_axis.axhline(frozen[name], color=colour, linestyle="--", linewidth=0.8)
    recall_axis.set(xlabel="epoch", ylabel="Recall@1 (%)", title="Validation Recall@1 (dashed: frozen backbone)")
    recall_axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.text(0.01, 0.01, note, fontsize=7)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def read_frozen(path: str | None) -> dict[str, float] | None:
    """Per-domain and unified/harmonic Recall@1 (percent) of a ``python -m peft_puma.evaluate --output`` file."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {path} cannot be read ({error})") from None
    if result.get("split") != VALIDATION_SPLIT:  # files written before `--split` existed scored the test split
        raise SystemExit(
            f"error: {path} was scored on the {result.get('split') or 'test'} split; these diagnoses use validation "
            "(`python -m peft_puma.evaluate --zero_shot --split validation --output ...`)"
        )
    scores = {name: 100 * s["recall@1"] for name, s in result["per_dataset"].items()}
    scores.update(unified=100 * result["unified"]["recall@1"], harmonic=100 * result["harmonic"]["recall@1"])
    return scores


# -------------------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The five subcommands and their options."""
    parser = argparse.ArgumentParser(prog="benchmarks/diagnosis.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    colour = commands.add_parser("colour", help="how much colour decides glyph retrieval")
    colour.add_argument("--uml_mini_dir", default="data/uml_mini")
    colour.add_argument("--backbone", default="assets/uml_mini_vit", help="the frozen backbone (and the adapters')")
    colour.add_argument("--adapter", action="append", default=[], help="a trained run folder (repeatable)")
    colour.add_argument("--output", required=True, help="JSON file for the table")
    fit = commands.add_parser("fit", help="Recall@1 among the training rows: did training fit its own classes?")
    fit.add_argument("--uml_mini_dir", default="data/uml_mini")
    fit.add_argument("--backbone", default="assets/uml_mini_vit", help="the frozen backbone (and the adapters')")
    fit.add_argument("--adapter", action="append", default=[], help="a trained run folder (repeatable)")
    fit.add_argument("--datasets", nargs="+", help="only these domains (default: all)")
    fit.add_argument("--output", required=True, help="JSON file for the table")
    misses = commands.add_parser("misses", help="where unified Recall@1's wrong neighbours land, by domain")
    misses.add_argument("--uml_mini_dir", default="data/uml_mini")
    misses.add_argument("--backbone", default="assets/uml_mini_vit", help="the frozen backbone (and the adapters')")
    misses.add_argument("--adapter", action="append", default=[], help="a trained run folder (repeatable)")
    misses.add_argument("--output", required=True, help="JSON file for the table")
    domains = commands.add_parser("domains", help="each domain trained alone against the unified run")
    domains.add_argument("--config", default="configs/uml_mini.yaml")
    domains.add_argument("--runs_dir", required=True, help="a run folder per domain is made here")
    domains.add_argument("--unified", required=True, help="the unified run (eval_split: validation) to compare with")
    domains.add_argument("--frozen", help="frozen-backbone scores on validation (`evaluate --zero_shot --output`)")
    domains.add_argument("--epochs", type=int, help="override the config's epochs (the unified run's, to compare)")
    domains.add_argument("--lr_step_epochs", type=int, help="override the config's lr_step_epochs likewise")
    domains.add_argument("--reuse_finished", action="store_true", help="read runs that already hold results.json")
    domains.add_argument("--output", required=True, help="JSON file for the table")
    curves = commands.add_parser("curves", help="a run's learning curves, from its train_log.jsonl")
    curves.add_argument("--run", required=True, help="a run trained with eval_every_epochs and a validation split")
    curves.add_argument("--zero_shot", help="frozen-backbone scores on validation (`evaluate --zero_shot --output`)")
    curves.add_argument("--figure", required=True, help="PNG to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a user mistake (a missing run, an old UML-mini build, a damaged adapter) is one line and
    exit status 2."""
    args = parse_args(argv)
    try:
        return _run(args)
    except PUMAError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    threads = configure_torch_threads()
    if args.command == "curves":
        curves = read_curves(args.run)
        os.makedirs(os.path.dirname(os.path.abspath(args.figure)), exist_ok=True)  # a figure's own name: overwritten
        plot_curves(curves, read_frozen(args.zero_shot), args.figure, f"run: {args.run}")
        print(json.dumps(curves, indent=1))
        return 0
    check_output(args.output)
    if args.command in ("colour", "fit", "misses"):
        for adapter in args.adapter:  # a wrong path stops the command before the first model is measured
            check_adapter_source(adapter)
    if args.command == "colour":
        output = colour_measurement(args)
        print(colour_markdown(output))
    elif args.command == "fit":
        output = fit_measurement(args)
        print(fit_markdown(output))
    elif args.command == "misses":
        output = misses_measurement(args)
        print(misses_markdown(output))
    else:
        output = domain_runs(args)
        print(domains_markdown(output))
    write_json_atomically(args.output, {"benchmark": f"diagnosis {args.command}", **run_info(threads), **output})
    return 0


if __name__ == "__main__":
    sys.exit(main())
