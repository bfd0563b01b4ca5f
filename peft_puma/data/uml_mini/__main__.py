"""Build UML-mini, the offline unified-metric-learning benchmark, in --out (or reuse the build there) and print its
summary (docs/data.md)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ...command_line import run_command
from ..schema import SPLITS
from . import UMLMiniConfig, format_summary, load_or_build_uml_mini


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build (or reuse) UML-mini in ``--out`` and print its summary."""
    parser = argparse.ArgumentParser(prog="python -m peft_puma.data.uml_mini", description=__doc__.replace("\n", " "))
    parser.add_argument("--out", required=True, help="folder to write the DatasetDict to (reused when up to date)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the class splits and of every image (default 0)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each domain's classes (default 1.0)")
    parser.add_argument(
        "--force", action="store_true", help="rebuild when --out holds a UML-mini build (of any seed, scale or version)"
    )
    parser.add_argument(
        "--install_missing",
        "--install-missing",
        action="store_true",
        help="apt-get install missing Debian sources (root)",
    )
    args = parser.parse_args(argv)
    return run_command(lambda: _build(args))


def _build(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    config = UMLMiniConfig(seed=args.seed, scale=args.scale)
    dataset, manifest, cached = load_or_build_uml_mini(
        args.out, config, args.force, install_missing=args.install_missing
    )
    what = "reused cached build in" if cached else "built"
    print(f"UML-mini ({what} {args.out}, {time.perf_counter() - start:.1f} s, seed {args.seed}, scale {args.scale})")
    print(format_summary(manifest["summary"]))
    print("rows: " + ", ".join(f"{split} {dataset[split].num_rows}" for split in SPLITS))


if __name__ == "__main__":
    sys.exit(main())
