"""Reading a user's collections (docs/collections.md, "Reading speed"): three targets, measured side by side in one run.

    python benchmarks/user_collections.py --output benchmarks/results/user_collections.json

1. **Same results.** UML-mini's images (every split, 13,972 32 px images) are written as a folder tree of JPEGs,
   ``<domain>/<class>/<n>.jpg``, and the same JPEG bytes as a dataset saved with ``save_to_disk`` (columns ``image``,
   ``label``, ``domain``; no splits). Both are read as a user's collection (``dataset_path``), split by the class rule
   (docs/collections.md, "The split"), and trained with the main job's recipe (``configs/uml_mini.yaml``: the stand-in
   backbone, batch 64, default workers) for ``--max_steps`` steps with the same seed: the split, the rows, the adapter's
   tensors and the scores must be identical.
2. **Throughput.** The same runs, ``--repeats`` times each, alternately, after a short warm-up run (the first
   training of a process pays torch's start-up): images per second of the training loop (the trainer's own
   ``train/images_per_second``, the median of its logged windows after the first), tree against saved dataset; the
   target is the tree within 10 %.
3. **Listing, checking, splitting.** Trees of ``--scales`` small images (16 px JPEGs, 10 domains, 10 images per class)
   are generated, then read in a fresh process each: the listing (``read_folder_tree``), the header check of every
   file (``find_bad_images``), the split and the row-schema tables, timed apart, with the process's peak RSS; and
   ``load_source`` end to end in another fresh process. The files are in the page cache (just written), as they are
   for a user who reads a collection again; the target is 60 s and 1 GB at 200,000 images.
4. **Start-up at scale.** Saved datasets of ``--startup_rows`` 16 px images (columns ``image``, ``label``,
   ``domain``; 10 images per class) and a folder tree of ``--startup_tree`` files are trained with the main job's
   recipe and ``split_fractions`` 0.98 0.01 0.01, each in a fresh process stopped at the end of its first optimiser
   step: the seconds from ``train``'s call to then, and the peak RSS above the imports. The target: 1M rows within
   2x the 100k figure and 1.5 GB above the imports.

``--parts`` runs some of the four (1 and 2 are one part, ``training``); the others' results in ``--output`` are
kept, each part with the commit and date it was measured at (``runs_of_parts``). The machine's load is recorded
before and after: on shared cores, timings stretch with other jobs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import datasets
import numpy as np
from PIL import Image
from run_info import check_output, load_average, run_info
from safetensors.torch import load_file
from script_options import add_option

from peft_puma.config.parsing import load_keys
from peft_puma.data.config import DataConfig
from peft_puma.data.schema import DATASET_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, ROLE_COLUMN, column_values
from peft_puma.owned_paths import write_json_atomically

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("training", "scaling", "startup")
STARTUP_SPLIT = [0.98, 0.01, 0.01]  # nearly every class trains: the held-out splits are not what is measured
STARTUP_TIME_RATIO, STARTUP_MEMORY_MB = 2.0, 1536.0  # 1M rows: at most 2x the 100k first step, 1.5 GB above imports
THROUGHPUT_TARGET = 0.10  # the tree within 10 % of the saved dataset's images per second
TIME_TARGET_S, MEMORY_TARGET_MB, AT_IMAGES = 60.0, 1024.0, 200_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_option(parser, "--output", default="benchmarks/results/user_collections.json", help="JSON results file")
    add_option(parser, "--config", default="configs/uml_mini.yaml", help="the training recipe (the main job's)")
    add_option(parser, "--uml_mini", default="data/uml_mini", help="the UML-mini build whose images are written out")
    add_option(parser, "--max_steps", type=int, default=60, help="training steps of each run (default 60)")
    add_option(parser, "--repeats", type=int, default=2, help="runs of each source, alternately (default 2)")
    add_option(parser, "--scales", type=int, nargs="+", default=[20_000, 200_000], help="generated tree sizes")
    add_option(parser, "--work_dir", default=None, help="scratch folder (default: a new one under /tmp, removed)")
    add_option(
        parser,
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="which measurements to run (default: all; their results replace those parts of --output, the rest kept)",
    )
    add_option(
        parser,
        "--startup_rows",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="saved-dataset sizes of the start-up part",
    )
    add_option(parser, "--startup_tree", type=int, default=200_000, help="folder-tree size of the start-up part")
    add_option(parser, "--measure_tree", default=None, help=argparse.SUPPRESS)  # the child process of target 3
    add_option(parser, "--end_to_end", action="store_true", help=argparse.SUPPRESS)
    add_option(parser, "--first_step", default=None, help=argparse.SUPPRESS)  # the child process of target 4
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------- 1 and 2: one collection
def write_sources(uml_mini: str, work: str) -> tuple[str, str]:
    """UML-mini's images as a JPEG folder tree and as a saved dataset of the same bytes."""
    tree, table = os.path.join(work, "tree"), os.path.join(work, "table")
    columns: dict[str, list] = {"image": [], "label": [], "domain": []}
    built = datasets.load_from_disk(uml_mini)
    number = 0
    for split in built.values():
        domains, labels = column_values(split, DATASET_COLUMN), column_values(split, LABEL_COLUMN)
        for image, domain, label in zip(split.select_columns([IMAGE_COLUMN]), domains, labels):
            encoded = io.BytesIO()
            image[IMAGE_COLUMN].convert("RGB").save(encoded, format="JPEG", quality=95)
            folder = os.path.join(tree, domain, f"{label:05d}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{number:06d}.jpg"), "wb") as handle:
                handle.write(encoded.getvalue())
            number += 1
    for domain in sorted(os.listdir(tree)):  # path order, the tree's own row order
        for name in sorted(os.listdir(os.path.join(tree, domain))):
            for file in sorted(os.listdir(os.path.join(tree, domain, name))):
                with open(os.path.join(tree, domain, name, file), "rb") as handle:
                    columns["image"].append({"bytes": handle.read(), "path": None})
                columns["label"].append(name)
                columns["domain"].append(domain)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("string"), "domain": datasets.Value("string")}
    )
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(table)
    return tree, table


def same_rows(tree: str, table: str) -> dict[str, Any]:
    """Both sources read as collections: the same split record, labels, domains, roles and pixels."""
    from peft_puma.data.unified import load_source

    one = load_source(load_keys(None, {"dataset_path": tree}, DataConfig).validate())
    other = load_source(load_keys(None, {"dataset_path": table, "domain_column": "domain"}, DataConfig).validate())
    columns = (LABEL_COLUMN, DATASET_COLUMN, ROLE_COLUMN)
    rows_equal = all(
        column_values(one.data[split], name) == column_values(other.data[split], name)
        for split in one.data
        for name in columns
    )
    pixels_equal = all(
        np.array_equal(np.asarray(a[IMAGE_COLUMN]), np.asarray(b[IMAGE_COLUMN]))
        for split in one.data
        for a, b in zip(one.data[split], other.data[split])
    )
    return {
        "same_split": one.split.domains == other.split.domains,
        "same_rows": rows_equal and set(one.data) == set(other.data),
        "same_pixels": pixels_equal,
        "rows": {split: one.data[split].num_rows for split in one.data},
    }


def train_once(config: str, source: dict[str, Any], output_dir: str, max_steps: int) -> dict[str, Any]:
    """One training run of the main job's recipe on ``source``; its throughput, scores and adapter tensors."""
    from peft_puma.training import load_config, train

    keys = {**source, "uml_mini_dir": None, "output_dir": output_dir, "max_steps": max_steps, "eval_every_epochs": 0}
    keys.update(report_to=[], progress_bar=False, save_every_steps=10 * max_steps, log_every_steps=5)
    started = time.perf_counter()
    result = train(load_config(config, keys))
    wall = time.perf_counter() - started
    with open(os.path.join(output_dir, "train_log.jsonl"), encoding="utf-8") as handle:
        logged = [json.loads(line) for line in handle]
    rates = [line["train/images_per_second"] for line in logged if "train/images_per_second" in line]
    rates = rates[1:] or rates  # the first window holds the loader's start
    return {
        "images_per_second": statistics.median(rates),
        "wall_s": round(wall, 1),
        "unified_recall_at_1": result.results["unified"]["recall@1"],
        "results": {"unified": result.results["unified"], "per_dataset": result.results["per_dataset"]},
        "tensors": load_file(os.path.join(output_dir, "adapter_model.safetensors")),
    }


def compare_training(config: str, tree: str, table: str, work: str, max_steps: int, repeats: int) -> dict[str, Any]:
    sources = {
        "folder_tree": {"dataset_path": tree},
        "saved_dataset": {"dataset_path": table, "domain_column": "domain"},
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    train_once(config, sources["saved_dataset"], os.path.join(work, "runs", "warm_up"), 10)  # torch's first-run costs
    for repeat in range(repeats):
        for name, source in sources.items():
            runs[name].append(train_once(config, source, os.path.join(work, "runs", f"{name}_{repeat}"), max_steps))
            print(f"{name} run {repeat + 1}: {runs[name][-1]['images_per_second']:.0f} images/s", file=sys.stderr)
    first, second = runs["folder_tree"][0], runs["saved_dataset"][0]
    identical = first["results"] == second["results"] and all(
        (first["tensors"][key] == second["tensors"][key]).all() for key in first["tensors"]
    )
    rate = {name: statistics.mean(run["images_per_second"] for run in done) for name, done in runs.items()}
    ratio = rate["folder_tree"] / rate["saved_dataset"]
    return {
        "identical_results": bool(identical),
        "unified_recall_at_1": {name: done[0]["unified_recall_at_1"] for name, done in runs.items()},
        "images_per_second": {
            name: [round(run["images_per_second"], 1) for run in done] for name, done in runs.items()
        },
        "wall_s": {name: [run["wall_s"] for run in done] for name, done in runs.items()},
        "tree_over_dataset": round(ratio, 3),
        "within_target": ratio >= 1 - THROUGHPUT_TARGET,
    }


# ---------------------------------------------------------------------------------------- 3: listing and splitting
def image_pool(count: int = 64) -> list[bytes]:
    """``count`` distinct 16 px JPEGs: the generated collections' images, reused (their content is not measured)."""
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(count):
        encoded = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(encoded, format="JPEG", quality=90)
        pool.append(encoded.getvalue())
    return pool


def generate_tree(root: str, images: int, domains: int = 10, per_class: int = 10) -> float:
    """``images`` 16 px JPEG files in ``domains`` domains of ``per_class`` images per class; returns seconds."""
    started = time.perf_counter()
    pool = image_pool()
    classes = images // (domains * per_class)
    number = 0
    for domain in range(domains):
        for index in range(classes):
            folder = os.path.join(root, f"domain_{domain:02d}", f"class_{index:05d}")
            os.makedirs(folder)
            for image in range(per_class):
                with open(os.path.join(folder, f"{image}.jpg"), "wb") as handle:
                    handle.write(pool[number % len(pool)])
                number += 1
    return time.perf_counter() - started


def measure_tree(root: str) -> dict[str, Any]:
    """(In a fresh process.) The listing, the header check and the split of ``root``, timed apart; peak RSS."""
    from peft_puma.data.collections import Collection, draw_split, split_by_record, to_unified
    from peft_puma.data.folder_tree import read_folder_tree
    from peft_puma.data.images import find_bad_images
    from peft_puma.data.splits import SplitRule

    times = {}
    started = time.perf_counter()
    tree = read_folder_tree(root)
    times["list_s"] = time.perf_counter() - started
    started = time.perf_counter()
    bad = find_bad_images([os.path.join(root, path) for path in tree.files], "header")
    times["check_s"] = time.perf_counter() - started
    started = time.perf_counter()
    parts = [tree.parts(path) for path in tree.files]
    images = datasets.Dataset.from_dict(
        {"image": [os.path.join(root, path) for path in tree.files]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    collection = Collection(images, [part[1] for part in parts], [part[2] for part in parts])
    record = draw_split(collection, SplitRule(), {})
    data = to_unified(collection, split_by_record(collection, record))
    times["split_s"] = time.perf_counter() - started
    return {
        "images": len(tree.files),
        "unreadable": len(bad),
        **{name: round(value, 2) for name, value in times.items()},
        "total_s": round(sum(times.values()), 2),
        "rows": {split: table.num_rows for split, table in data.items()},
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``; ``ru_maxrss`` would keep the parent's peak across ``exec``)."""
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_end_to_end(root: str) -> dict[str, Any]:
    """(In a fresh process.) ``load_source`` of ``root`` as training calls it: time and peak RSS."""
    from peft_puma.data.unified import load_source

    baseline = peak_rss_mb()
    started = time.perf_counter()
    loaded = load_source(load_keys(None, {"dataset_path": root}, DataConfig).validate())
    return {
        "total_s": round(time.perf_counter() - started, 2),
        "rows": {split: table.num_rows for split, table in loaded.data.items()},
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": baseline,
    }


def in_child(root: str, *flags: str) -> dict[str, Any]:
    argv = [sys.executable, os.path.abspath(__file__), "--measure_tree", root, *flags]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling(work: str, scales: list[int]) -> dict[str, Any]:
    found = {}
    for images in scales:
        root = os.path.join(work, f"generated_{images}")
        generated = generate_tree(root, images)
        found[str(images)] = {
            "generate_s": round(generated, 1),
            "steps": in_child(root),
            "load_source": in_child(root, "--end_to_end"),
        }
        shutil.rmtree(root)
        print(f"{images} images: {found[str(images)]['load_source']['total_s']} s", file=sys.stderr)
    return found


# ------------------------------------------------------------------------------------------------- 4: start-up
def generate_saved(root: str, rows: int, domains: int = 10, per_class: int = 10) -> float:
    """A dataset saved with ``save_to_disk`` of ``rows`` 16 px images (columns ``image``, ``label``, ``domain``; no
    splits), ``domains`` domains of ``per_class`` images per class, written in chunks; returns seconds."""
    import pyarrow as pa

    started = time.perf_counter()
    pool = image_pool()
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("int64"), "domain": datasets.Value("string")}
    )

    def chunks():
        for begin in range(0, rows, 100_000):
            numbers = np.arange(begin, min(rows, begin + 100_000))
            per_domain = rows // domains
            images = pa.array(
                [{"bytes": pool[number % len(pool)], "path": None} for number in numbers],
                type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
            )
            labels = pa.array((numbers % per_domain) // per_class, type=pa.int64())
            names = pa.array([f"domain_{number // per_domain:02d}" for number in numbers], type=pa.string())
            yield pa.table({"image": images, "label": labels, "domain": names})

    table = pa.concat_tables(list(chunks()))
    datasets.Dataset(datasets.table.InMemoryTable(table), info=datasets.DatasetInfo(features=features)).save_to_disk(
        root, max_shard_size="500MB"
    )
    return time.perf_counter() - started


def first_step(request: str) -> dict[str, Any]:
    """(In a fresh process.) ``train`` of the request's source with the main job's recipe, stopped at the end of its
    first optimiser step: seconds from the call to then, and peak RSS above the imports (``VmHWM`` after importing
    the trainer, then at the first step)."""
    import torch

    from peft_puma.training import load_config, train

    asked = json.loads(request)
    imported = peak_rss_mb()
    step = torch.optim.AdamW.step
    started = time.perf_counter()

    def stop_after_first(self, *args, **kwargs):
        done = step(self, *args, **kwargs)
        print(json.dumps({"first_step_s": round(time.perf_counter() - started, 2), "peak_rss_mb": peak_rss_mb(),
                          "rss_after_imports_mb": imported}), flush=True)  # fmt: skip
        os._exit(0)  # nothing after the first step is measured
        return done

    torch.optim.AdamW.step = stop_after_first
    keys = {**asked["source"], "uml_mini_dir": None, "output_dir": asked["output_dir"], "max_steps": 1}
    keys.update(split_fractions=STARTUP_SPLIT, eval_every_epochs=0, report_to=[], progress_bar=False)
    train(load_config(asked["config"], keys))
    raise SystemExit("the training ended without an optimiser step")


def first_step_in_child(config: str, source: dict[str, Any], output_dir: str) -> dict[str, Any]:
    request = json.dumps({"config": config, "source": source, "output_dir": output_dir})
    argv = [sys.executable, os.path.abspath(__file__), "--first_step", request]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"the start-up run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    measured["above_imports_mb"] = round(measured["peak_rss_mb"] - measured["rss_after_imports_mb"], 1)
    return measured


def startup(config: str, work: str, sizes: list[int], tree_images: int) -> dict[str, Any]:
    """Time to the first training step and peak RSS above the imports, for saved datasets of ``sizes`` rows and a
    folder tree of ``tree_images`` files (each generated, measured in a fresh process, then removed)."""
    found: dict[str, Any] = {"saved_dataset": {}, "folder_tree": {}}
    for rows in sizes:
        root = os.path.join(work, f"saved_{rows}")
        generated = generate_saved(root, rows)
        source = {"dataset_path": root, "domain_column": "domain"}
        found["saved_dataset"][str(rows)] = {
            "generate_s": round(generated, 1),
            **first_step_in_child(config, source, os.path.join(work, f"run_saved_{rows}")),
        }
        shutil.rmtree(root)
        print(f"saved dataset, {rows} rows: {found['saved_dataset'][str(rows)]}", file=sys.stderr)
    if tree_images:
        root = os.path.join(work, f"tree_{tree_images}")
        generated = generate_tree(root, tree_images)
        found["folder_tree"][str(tree_images)] = {
            "generate_s": round(generated, 1),
            **first_step_in_child(config, {"dataset_path": root}, os.path.join(work, f"run_tree_{tree_images}")),
        }
        shutil.rmtree(root)
        print(f"folder tree, {tree_images} files: {found['folder_tree'][str(tree_images)]}", file=sys.stderr)
    saved = found["saved_dataset"]
    if "100000" in saved and "1000000" in saved:
        ratio = saved["1000000"]["first_step_s"] / saved["100000"]["first_step_s"]
        found["first_step_1m_over_100k"] = round(ratio, 2)
        found["within_target"] = (
            ratio <= STARTUP_TIME_RATIO and saved["1000000"]["above_imports_mb"] <= STARTUP_MEMORY_MB
        )
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.first_step:
        print(json.dumps(first_step(args.first_step)))
        return
    if args.measure_tree:
        measured = measure_end_to_end(args.measure_tree) if args.end_to_end else measure_tree(args.measure_tree)
        print(json.dumps(measured))
        return
    check_output(args.output)
    import torch

    info = run_info(torch.get_num_threads())
    work = args.work_dir or tempfile.mkdtemp(prefix="peft_puma_collections_")
    results: dict[str, Any] = {}
    if set(args.parts) != set(PARTS) and os.path.exists(args.output):  # a part run again: the others are kept
        with open(args.output, encoding="utf-8") as handle:
            results = json.load(handle)
    results.update({"benchmark": "collections", **info})
    runs = results.setdefault("runs_of_parts", {})
    try:
        if "training" in args.parts:
            tree, table = write_sources(args.uml_mini, work)
            results["same_rows"] = same_rows(tree, table)
            results["training"] = compare_training(args.config, tree, table, work, args.max_steps, args.repeats)
        if "scaling" in args.parts:
            results["scaling"] = scaling(work, args.scales)
            largest = results["scaling"].get(str(AT_IMAGES))
            if largest:
                end = largest["load_source"]
                results["scaling_within_target"] = (
                    end["total_s"] <= TIME_TARGET_S and end["peak_rss_mb"] <= MEMORY_TARGET_MB
                )
        if "startup" in args.parts:
            results["startup"] = startup(args.config, work, args.startup_rows, args.startup_tree)
        for part in args.parts:
            runs[part] = {"date": info["date"], "git_commit": info["git_commit"], "command": info["command"]}
        results["load_average_end"] = load_average()
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    write_json_atomically(args.output, results)
    print(json.dumps({key: value for key, value in results.items() if key not in ("versions", "machine")}, indent=1))


if __name__ == "__main__":
    main()
