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
    args = parser.parse_args(argv)
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
    report["load_average_end"] = load_average()
    table = markdown(results, args.k)
    print(table)
    if args.output:
        write_json_atomically(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
