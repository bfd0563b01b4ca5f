"""Benchmark: ``evaluate_retrieval`` at the paper's scale on a CPU (arXiv 2309.08944; docs/spec.md section 7).

Synthetic 128-d embeddings shaped like the eight test sets of the paper (148.5K images; sizes and class counts below
are approximations of the real test splits, scaled to ``--num_rows``), every row leave-one-out. One call computes the
unified result (all queries against the 150k-row union gallery), the eight dataset-specific results and the harmonic
mean: the whole Table 2 row. Prints wall time, peak resident memory, machine load and versions.

    python benchmarks/retrieval_eval.py                      # 150,000 x 128, backend auto (faiss when installed)
    python benchmarks/retrieval_eval.py --backend torch --num_rows 50000

Not a test: it takes minutes. Figures measured with it are in docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import time
from collections.abc import Sequence

import numpy as np
import torch
from run_info import run_info
from script_options import add_option

from peft_puma.evaluation import evaluate_retrieval, format_table_row
from peft_puma.evaluation.knn import faiss_available, resolve_backend

# (name, approximate test images, test classes): docs/spec.md section 7 and the datasets' published sizes.
TEST_SETS = (
    ("CUB", 5_924, 100),
    ("Cars", 8_131, 98),
    ("SOP", 60_502, 11_316),
    ("InShop", 26_830, 3_985),
    ("NABird", 24_600, 277),
    ("Dog", 10_300, 60),
    ("Flowers", 4_000, 51),
    ("Aircraft", 5_000, 50),
)


def synthetic_test_sets(num_rows: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Clustered embeddings: each class a random centre, each image the centre plus Gaussian noise.

    Sizes and class counts of ``TEST_SETS`` are scaled together to ``num_rows`` (images per class stay as in the
    paper); every class gets 2 images and the rest fall at random, so class sizes vary as in the real sets.
    """
    rng = np.random.default_rng(seed)
    total = sum(size for _, size, _ in TEST_SETS)
    sizes = [round(size * num_rows / total) for _, size, _ in TEST_SETS]
    sizes[-1] += num_rows - sum(sizes)
    embeddings, labels, domains = [], [], []
    first_label = 0  # labels are unique across sets, so --no_domains scores the same unified task
    for (name, _, paper_classes), size in zip(TEST_SETS, sizes):
        num_classes = max(1, min(size // 2, round(paper_classes * num_rows / total)))
        extra = rng.integers(0, num_classes, size - 2 * num_classes)
        class_of_row = np.concatenate([np.repeat(np.arange(num_classes), 2), extra])
        centres = rng.normal(size=(num_classes, dim)).astype(np.float32)
        embeddings.append(centres[class_of_row] + noise * rng.normal(size=(size, dim)).astype(np.float32))
        labels.append(first_label + class_of_row)
        first_label += num_classes
        domains += [name] * size
    return np.concatenate(embeddings), np.concatenate(labels), domains


def _faiss_version() -> str:
    import faiss  # optional: only where installed

    return faiss.__version__


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    option = functools.partial(add_option, parser)
    option("--num_rows", type=int, default=150_000)
    option("--dim", type=int, default=128)
    option("--backend", default="auto", choices=("auto", "torch", "faiss"))
    option("--ks", type=int, nargs="+", default=[1])
    option("--noise", type=float, default=1.6, help="within-class noise (1.6: unified R@1 in the paper's range)")
    option("--no_domains", action="store_true", help="unified result only (no per-dataset searches)")
    option("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    embeddings, labels, domains = synthetic_test_sets(args.num_rows, args.dim, args.noise, args.seed)
    backend = resolve_backend(args.backend, torch.device("cpu"))
    info = run_info(torch.get_num_threads())  # the run record every benchmark prints
    machine, versions = info["machine"], info["versions"]
    print(
        f"machine: {machine['cpu']}, {machine['cores_visible']} cores visible, torch threads {machine['torch_threads']}"
    )
    faiss_version = _faiss_version() if faiss_available() else "not installed"
    print(
        "versions: " + ", ".join(f"{name} {version}" for name, version in {**versions, "faiss": faiss_version}.items())
    )
    print(f"data: {embeddings.shape[0]:,} x {embeddings.shape[1]} float32, {len(set(zip(domains, labels))):,} classes")
    print(f"mode: leave-one-out, unified{'' if args.no_domains else ' + per-dataset + harmonic'}, backend {backend}")
    print(f"load average before: {os.getloadavg()}")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = evaluate_retrieval(
        embeddings, labels, None if args.no_domains else domains, ks=tuple(args.ks), backend=args.backend
    )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux
    print(f"load average after: {os.getloadavg()}")
    print(f"wall time: {seconds:.1f} s")
    # Other processes share the cores: CPU time is the load-independent figure (wall ~ CPU / cores when alone).
    print(f"CPU time (all threads of this process): {cpu_seconds:.1f} s")
    print(f"peak resident memory (whole process): {peak_gb:.2f} GB")
    unified = result["unified"]
    print("unified: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in unified.items()))
    if not args.no_domains:
        print(format_table_row(result))


if __name__ == "__main__":
    main()
