"""Search benchmark: build time, memory, query throughput and recall@k of the flat, HNSW and IVF indexes of
``python -m peft_puma.search`` (docs/search.md, "Index options").

    nice -n 19 python benchmarks/search.py --output benchmarks/results/search_1m.json \
        --embeddings uml_mini_test.safetensors
    python benchmarks/search.py --num_vectors 10000 --num_queries 100      # a quick look

Every index is built and searched through ``peft_puma.search.index`` (what the command line uses). For each data set:

- ``synthetic-embedding_like``: ``--num_vectors`` L2-normalised vectors of ``--dim`` dimensions in classes of 10,
  with the principal-axis spectrum and class spread of real embeddings (measured on UML-mini's, see
  :func:`synthetic`), and ``--num_queries`` new vectors of the same classes;
- ``synthetic-uniform``: vectors uniform on the sphere, the worst case for any approximate index (no structure);
- ``--embeddings FILE``: an embeddings file of ``python -m peft_puma.embed`` (UML-mini's test split, say), every row a
  query against the others (leave-one-out, as the evaluation).

It reports, per index: ``build_s`` (adding, plus training for IVF), ``memory_mb`` (how far the process's resident
memory stays above its level before the build, i.e. what the index holds), ``peak_memory_mb`` (the highest rise
during the build, sampled every 10 ms) and, per search setting (``ef_search`` for HNSW, ``nprobe`` for IVF),
``recall@k`` against the exact search (the shared fraction of the top ``k``, averaged over queries), ``queries_per_s``
(all queries in one batch, median of ``--repeats`` rounds) and ``speedup`` over the exact search. Searches run on
``--threads`` faiss / torch threads (default 1: the cores are shared, so numbers are per core). The output JSON also
holds the machine, the versions, the faiss version and the load average before and after.

``--app_adapter RUN --app_dataset DIR`` also times the search app (``python -m peft_puma.search app``) the way a
person meets it: a flat (exact) index of ``--app_gallery`` rows (default 100,000: embedding-like vectors of the
adapter's dimension, each row one of ``--app_images`` images of the dataset's ``--app_split`` written as files, so
thumbnails decode real images), served on 127.0.0.1 and queried ``--app_queries`` times through ``gradio_client``
with those image files: each answer (upload, embedding, the unified and per-collection exact searches, thumbnails,
their download) must come within 1 s on 2 cores (``--threads 2``). ``--distributions`` with no value skips the index
sweep::

    nice -n 19 python benchmarks/search.py --distributions --threads 2 --app_adapter runs/uml_mini \
        --app_dataset data/uml_mini --output benchmarks/results/search_app.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Any

import numpy as np
import torch
from run_info import load_average, run_info

from peft_puma.errors import ForeignContentError, PUMAError
from peft_puma.inference.embeddings_file import load_embeddings
from peft_puma.owned_paths import check_json_output, write_json_atomically
from peft_puma.search.index import INDEX_TYPES, build_index, require_faiss

MB = 1e6
CLASS_SIZE = 10  # synthetic vectors per class
SPECTRUM_DECAY = 1.0  # standard deviation of principal axis i is i ** -1.0
CLASS_SPREAD = 0.35  # norm of a vector's offset from its class centre: cosine to it about 1 / sqrt(1 + 0.35**2)
DISTRIBUTIONS = ("embedding_like", "uniform")
EF_SEARCH_SWEEP = (16, 32, 64, 128, 256, 512)
NPROBE_SWEEP = (1, 4, 16, 64, 128, 256, 512)


# ----------------------------------------------------------------------------------------------------------- data
def _normalised(values: np.ndarray) -> np.ndarray:
    values /= np.linalg.norm(values, axis=1, keepdims=True)
    return values


def synthetic(distribution: str, num_vectors: int, dim: int, num_queries: int, seed: int) -> dict[str, Any]:
    """Gallery and query vectors (float32, L2-normalised) of one synthetic distribution, from ``seed``.

    ``embedding_like``: class centres drawn with principal-axis standard deviations ``i ** -1`` (in a random
    rotation), and each vector its class centre plus an offset of the same spectrum and norm 0.35. On UML-mini's
    test embeddings of the trained run, 90 / 95 % of the variance lie in 13 / 19 principal axes and a vector's cosine
    to its class centre is 0.95 on average; these vectors give 11 / 19 axes and 0.94 (at 20k vectors).
    ``uniform``: uniform on the sphere (every direction alike), the worst case for an approximate index.
    """
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        gallery = _normalised(rng.standard_normal((num_vectors, dim), dtype=np.float32))
        queries = _normalised(rng.standard_normal((num_queries, dim), dtype=np.float32))
        return {"gallery": gallery, "queries": queries, "exclude": None}
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    spectrum = np.arange(1, dim + 1, dtype=np.float32) ** -SPECTRUM_DECAY

    def shaped(count: int) -> np.ndarray:  # Gaussian vectors of that spectrum, rotated
        values = rng.standard_normal((count, dim), dtype=np.float32)
        values *= spectrum
        return values @ rotation.T

    centres = _normalised(shaped(max(1, num_vectors // CLASS_SIZE)))
    scale = np.float32(CLASS_SPREAD / np.linalg.norm(spectrum))

    def around(count: int) -> np.ndarray:
        points = shaped(count)
        points *= scale
        points += centres[rng.integers(0, len(centres), count)]
        return _normalised(points)

    return {"gallery": around(num_vectors), "queries": around(num_queries), "exclude": None}


def from_embeddings_file(path: str) -> dict[str, Any]:
    """Every row of an embeddings file as a query against all the others (leave-one-out)."""

    vectors = load_embeddings(path)["embeddings"].numpy()
    return {"gallery": vectors, "queries": vectors, "exclude": np.arange(len(vectors))}


# ------------------------------------------------------------------------------------------------------- measuring
def resident_bytes() -> int:
    """The process's resident set size now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Highest resident set size seen while the ``with`` block runs (sampled every 10 ms by a thread)."""

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, resident_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def timed_search(index: Any, data: dict[str, Any], k: int, repeats: int, **setting: int) -> tuple[float, np.ndarray]:
    """Median seconds of one batched search of every query, and the rows found."""
    times, rows = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        _, rows = index.search(data["queries"], k, exclude=data["exclude"], **setting)
        times.append(time.perf_counter() - started)
    return statistics.median(times), rows.numpy()


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of the fraction of the exact top ``k`` found (rows -1 never match)."""
    hits = (found[:, :, None] == exact[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / exact.shape[1])


def measure(data: dict[str, Any], index_types: list[str], k: int, repeats: int, sweeps: dict[str, list[int]]) -> dict:
    """Build each index over ``data["gallery"]`` and search it with every setting of its sweep."""
    num_queries = len(data["queries"])
    result: dict[str, Any] = {"num_vectors": int(len(data["gallery"])), "dim": int(data["gallery"].shape[1])}
    result["num_queries"] = num_queries
    result["leave_one_out"] = data["exclude"] is not None
    exact_rows, exact_s = None, None
    for index_type in ["flat"] + [name for name in index_types if name != "flat"]:
        with PeakMemory() as memory:
            started = time.perf_counter()
            index = build_index(data["gallery"], index_type)
            build_s = time.perf_counter() - started
        entry: dict[str, Any] = {
            "params": index.params,
            "build_s": build_s,
            "memory_mb": (resident_bytes() - memory.start) / MB,
            "peak_memory_mb": (memory.peak - memory.start) / MB,
        }
        if index_type == "flat":
            exact_s, exact_rows = timed_search(index, data, k, repeats)
            result["exact_queries_per_s"] = num_queries / exact_s
            entry["settings"] = [{"recall": 1.0, "queries_per_s": num_queries / exact_s, "speedup": 1.0}]
        else:
            name = "ef_search" if index_type == "hnsw" else "nprobe"
            limit = index.params.get("nlist", max(sweeps[name]))
            values = sorted({min(value, limit) for value in sweeps[name]} | {index.params[name]})
            entry["settings"] = []
            for value in values:
                seconds, rows = timed_search(index, data, k, repeats, **{name: value})
                entry["settings"].append(
                    {
                        name: value,
                        "default": value == index.params[name],
                        "recall": recall(rows, exact_rows),
                        "queries_per_s": num_queries / seconds,
                        "speedup": exact_s / seconds,
                    }
                )
                print(f"  {index_type} {name}={value}: {entry['settings'][-1]}", flush=True)
        print(f"  {index_type}: built in {build_s:.1f} s, {entry['memory_mb']:.0f} MB", flush=True)
        if index_type in index_types:
            result[index_type] = entry
        del index
    return result


# ------------------------------------------------------------------------------------------------------- the app
APP_TARGET_S = 1.0  # the longest a query of the app may take at 100k images on 2 cores


def app_gallery(dataset: str, split: str, count: int, folder: str) -> list[str]:
    """``count`` images of a saved dataset's split written as PNG files ``<collection>/<row>.png`` under
    ``folder``, spread over the split; their paths relative to ``folder``."""
    import datasets

    rows = datasets.load_from_disk(dataset)[split]
    step = max(1, rows.num_rows // count)
    paths = []
    for row in range(0, rows.num_rows, step)[:count]:
        example = rows[row]
        relative = os.path.join(str(example.get("dataset", "images")), f"{row:06d}.png")
        os.makedirs(os.path.join(folder, os.path.dirname(relative)), exist_ok=True)
        example["image"].convert("RGB").save(os.path.join(folder, relative))
        paths.append(relative)
    return paths


def app_index(adapter: str, images: str, paths: list[str], num_rows: int, folder: str, seed: int) -> None:
    """A flat index folder of ``num_rows`` rows, as ``index --images`` writes it: the rows cycle over ``paths``,
    their vectors are embedding-like ones of the adapter's dimension (an exact search costs the same whatever the
    values), the manifest names the adapter, so the app embeds queries with it."""
    from peft_puma.data.transforms import make_eval_transform
    from peft_puma.search.embedding import load_model, preprocessing_record
    from peft_puma.search.folder import make_manifest, save_index_folder
    from peft_puma.search.identity import model_identity
    from peft_puma.search.rows import folder_rows

    identity = model_identity(adapter, None, None, zero_shot=False)
    model, processor, image_size = load_model(identity, identity["adapter"])
    transform = make_eval_transform(image_size, image_processor=processor)
    with torch.no_grad():
        blank = torch.zeros(1, 3, transform.image_size, transform.image_size)
        dimension = int(model(pixel_values=blank).embeddings.shape[1])
    vectors = synthetic("embedding_like", num_rows, dimension, 0, seed)["gallery"]
    index = build_index(vectors, "flat")
    rows = folder_rows(images, [paths[row % len(paths)] for row in range(num_rows)])
    save_index_folder(folder, index, make_manifest(index, identity, preprocessing_record(transform), rows))


def measure_app(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per query of the served app (median, max) over ``--app_queries`` uploads, with the 1 s target."""
    import tempfile

    from gradio_client import Client, handle_file

    from peft_puma.search.app import ALL_COLLECTIONS, build_app, free_port, launch

    with tempfile.TemporaryDirectory(prefix="search_app_") as scratch:
        images = os.path.join(scratch, "images")
        paths = app_gallery(args.app_dataset, args.app_split, args.app_images, images)
        started = time.perf_counter()
        app_index(args.app_adapter, images, paths, args.app_gallery, os.path.join(scratch, "index"), args.seed)
        built_s = time.perf_counter() - started
        app = build_app(os.path.join(scratch, "index"))
        port = free_port("127.0.0.1")
        launch(app, "127.0.0.1", port, block=False)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=scratch)
            queries = [os.path.join(images, paths[i * len(paths) // args.app_queries]) for i in range(args.app_queries)]
            client.predict(handle_file(queries[0]), args.k, ALL_COLLECTIONS, api_name="/search")  # warm-up
            times = []
            for path in queries:
                started = time.perf_counter()
                message, results, *per_collection = client.predict(
                    handle_file(path), args.k, ALL_COLLECTIONS, api_name="/search"
                )
                times.append(time.perf_counter() - started)
                if len(results) != args.k:
                    raise RuntimeError(f"the app returned {len(results)} results, not {args.k}: {message}")
        finally:
            app.close()
    result = {
        "num_rows": args.app_gallery,
        "distinct_images": len(paths),
        "collections": len({os.path.dirname(path) for path in paths}),
        "k": args.k,
        "queries": args.app_queries,
        "index_build_s": built_s,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "times_s": times,
        "target_s": APP_TARGET_S,
    }
    result["within_target"] = result["max_s"] <= APP_TARGET_S
    print(
        f"app: {args.app_gallery:,} rows, k {args.k}: median {result['median_s']:.3f} s, max {result['max_s']:.3f} s "
        f"per query ({'within' if result['within_target'] else 'OVER'} the {APP_TARGET_S:.0f} s target)",
        flush=True,
    )
    return result


# ------------------------------------------------------------------------------------------------------- reporting
def markdown(results: dict[str, Any], k: int) -> str:
    """One table per data set: index, setting, build time, memory, recall@k, throughput, speedup."""
    lines = []
    for name, result in results.items():
        lines += [
            f"{name}: {result['num_vectors']:,} x {result['dim']}, {result['num_queries']:,} queries"
            + (" (leave-one-out)" if result["leave_one_out"] else ""),
            "",
            f"| index | setting | build (s) | memory (MB) | peak (MB) | recall@{k} | queries/s | x exact |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for index_type in INDEX_TYPES:
            if index_type not in result:
                continue
            entry = result[index_type]
            for setting in entry["settings"]:
                label = ", ".join(f"{key} {value}" for key, value in setting.items() if key in ("ef_search", "nprobe"))
                label = (label or "exact") + (" (default)" if setting.get("default") else "")
                lines.append(
                    f"| {index_type} | {label} | {entry['build_s']:.1f} | {entry['memory_mb']:.0f} | "
                    f"{entry['peak_memory_mb']:.0f} | {setting['recall']:.3f} | {setting['queries_per_s']:,.0f} | "
                    f"{setting['speedup']:.1f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num_queries", type=int, default=1000)
    parser.add_argument("--distributions", nargs="*", default=list(DISTRIBUTIONS), choices=DISTRIBUTIONS)
    parser.add_argument("--embeddings", help="an embeddings file of python -m peft_puma.embed (leave-one-out)")
    parser.add_argument("--index_types", nargs="+", default=list(INDEX_TYPES), choices=INDEX_TYPES)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef_search", type=int, nargs="+", default=list(EF_SEARCH_SWEEP))
    parser.add_argument("--nprobe", type=int, nargs="+", default=list(NPROBE_SWEEP))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="faiss and torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="result JSON (new, or a benchmark result of peft_puma)")
    parser.add_argument("--app_adapter", help="time the search app with this run's adapter (needs --app_dataset)")
    parser.add_argument("--app_dataset", help="a saved dataset whose images the app's gallery shows")
    parser.add_argument("--app_split", default="test")
    parser.add_argument("--app_images", type=int, default=500, help="distinct image files of the app's gallery")
    parser.add_argument("--app_gallery", type=int, default=100_000, help="rows of the app's index")
    parser.add_argument("--app_queries", type=int, default=20)
    args = parser.parse_args(argv)
    if bool(args.app_adapter) != bool(args.app_dataset):
        parser.error("--app_adapter and --app_dataset go together")
    try:
        if args.output:
            check_json_output(args.output, "benchmark", "a benchmark result")
        faiss = require_faiss()
    except (ForeignContentError, PUMAError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"benchmark": "search", **run_info(args.threads), "faiss": faiss.__version__}
    report["settings"] = {"k": args.k, "repeats": args.repeats, "seed": args.seed, "threads": args.threads}
    sweeps = {"ef_search": args.ef_search, "nprobe": args.nprobe}
    sources = {f"synthetic-{name}": name for name in args.distributions}
    if args.embeddings:
        sources[os.path.basename(args.embeddings)] = args.embeddings
    results = {}
    for name, source in sources.items():
        print(f"{name}:", flush=True)
        if source == args.embeddings:
            data = from_embeddings_file(source)
        else:
            data = synthetic(source, args.num_vectors, args.dim, args.num_queries, args.seed)
        results[name] = measure(data, args.index_types, args.k, args.repeats, sweeps)
        del data
    report["results"] = results
    if args.app_adapter:
        report["app_query"] = measure_app(args)
    report["load_average_end"] = load_average()
    table = markdown(results, args.k)
    print(table)
    if args.output:
        write_json_atomically(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
