"""Wall time of the README's main job at two commits, run alternately on the same machine (docs/cost.md).

    python benchmarks/main_job_time.py --commits a4790cd HEAD --rounds 1 \
        --output benchmarks/results/main_job_time.json

Each commit is checked out into its own git worktree (under ``--work_dir``), where ``data/`` points at this checkout's
UML-mini build; then the main job (``python -m peft_puma.train --config configs/uml_mini.yaml``, the README's command,
its final test read included) runs in each, commit after commit, ``--rounds`` times, each run in a fresh run folder.
Alternating makes a change of load between runs hit both commits alike. What is recorded per run: the wall time, the
CPU time and the peak RSS (``resource.getrusage`` of the child) and the run's unified and harmonic test Recall@1, so
a faster commit that trains another model would show. Set ``PEFT_PUMA_TEST_READS`` to put the test reads on record.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from run_info import check_output, load_average, run_info

from peft_puma.owned_paths import write_json_atomically

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", nargs=2, required=True, metavar=("BEFORE", "AFTER"), help="the two commits")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each commit, alternating (default 1)")
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument(
        "--work_dir", default="runs/main_job_time", help="worktrees and run folders (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the main job's --seed (default 0)")
    parser.add_argument(
        "--append", action="store_true", help="add the rounds to those already in --output (same commits and arguments)"
    )
    parser.add_argument("train_args", nargs="*", help="more train arguments after --, e.g. -- --max_steps 20")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def worktree(commit: str, work_dir: Path) -> Path:
    """A checkout of ``commit`` whose ``data/`` is this checkout's (UML-mini is built once)."""
    sha = subprocess.run(["git", "rev-parse", "--short", commit], cwd=REPO, check=True, capture_output=True, text=True)
    folder = work_dir / f"tree_{sha.stdout.strip()}"
    if not folder.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=REPO, check=True)
    data = folder / "data"
    if not data.exists():
        data.symlink_to(REPO / "data")
    return folder


def run_main_job(tree: Path, run_dir: Path, seed: int, extra: Sequence[str]) -> dict:
    """The main job in ``tree`` (its own package first on the path), timed from outside."""
    command = [sys.executable, "-m", "peft_puma.train", "--config", "configs/uml_mini.yaml", "--output_dir",
               str(run_dir), "--seed", str(seed), "--progress_bar", "false", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the main job failed in {tree} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_mb": after.ru_maxrss / 1024,  # the largest child so far, in KiB on Linux
        "unified_recall_at_1": results["unified"]["recall@1"],
        "harmonic_recall_at_1": results["harmonic"]["recall@1"],
    }


def appended_to(args: argparse.Namespace, trees: dict[str, Path]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The sessions and runs already in ``--output``, which ``--append`` adds to: refused unless they were measured
    for the same commits (the same trees) with the same train arguments."""
    with open(args.output, encoding="utf-8") as handle:
        before = json.load(handle)
    commits = {commit: tree.name.removeprefix("tree_") for commit, tree in trees.items()}
    if before.get("commits") != commits or before.get("train_args") != args.train_args:
        raise SystemExit(f"{args.output} holds runs of {before.get('commits')} {before.get('train_args')}; "
                         f"--append needs the same commits and arguments ({commits} {args.train_args}).")  # fmt: skip
    session = {key: before.get(key) for key in ("date", "git_commit", "load_average_start", "load_average_end")}
    return [*before.get("earlier_sessions", []), session], before["runs"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output)
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    trees = {commit: worktree(commit, work_dir) for commit in args.commits}
    info = run_info(torch_threads=2)
    runs: dict[str, list[dict]] = {commit: [] for commit in args.commits}
    earlier = []
    if args.append:
        earlier, runs = appended_to(args, trees)
    done = len(runs[args.commits[0]])
    for round_index in range(done, done + args.rounds):
        for commit, tree in trees.items():
            run_dir = work_dir / f"run_{tree.name}_{round_index}"
            print(f"round {round_index + 1}/{done + args.rounds}: {commit} ({tree.name})", file=sys.stderr)
            runs[commit].append(run_main_job(tree, run_dir, args.seed, args.train_args))
            print(f"  {runs[commit][-1]['wall_s']:.0f} s", file=sys.stderr)
    before, after = args.commits
    medians = {commit: statistics.median(run["wall_s"] for run in rows) for commit, rows in runs.items()}
    result = {
        "benchmark": "main_job_time",
        **info,
        "commits": {commit: trees[commit].name.removeprefix("tree_") for commit in args.commits},
        "train_args": args.train_args,
        "runs": runs,
        "earlier_sessions": earlier,
        "median_wall_s": medians,
        "after_vs_before": medians[after] / medians[before],
        "load_average_end": load_average(),
    }
    write_json_atomically(args.output, result)
    print(f"main job: {before} {medians[before]:.0f} s, {after} {medians[after]:.0f} s "
          f"({result['after_vs_before']:.3f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
