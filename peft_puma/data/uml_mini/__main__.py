"""Build UML-mini, the offline unified-metric-learning benchmark, in --output_dir (or reuse the build there) and print
its summary (docs/uml_mini.md)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ...command_line import run_command
from ..schema import SPLITS
from . import UMLMiniConfig, format_summary, load_or_build_uml_mini
from .command_options import CommandParser, add_source_options, source_folders
from .sources import FASHION_MNIST_DIR_VARIABLE, FONTS_DIR_VARIABLE

EPILOG = f"""Only --install_missing needs root (for apt-get); building does not. Without root, or off Debian, give your
own copies with --fonts_dir and --fashion_mnist_dir, or set {FONTS_DIR_VARIABLE} and {FASHION_MNIST_DIR_VARIABLE}
(python -m peft_puma.train --uml_mini_dir, which builds UML-mini where the folder is missing, reads them too); the same
files give the same build (docs/uml_mini.md). Exit status: 0 built or reused, 2 a mistake or a missing source (one
line)."""


def build_parser() -> CommandParser:
    """The options: where the build goes, which build, and where its sources are read."""
    parser = CommandParser(
        prog="python -m peft_puma.data.uml_mini",
        description=__doc__,
        epilog=EPILOG,
    )
    parser.add_option(
        "--output_dir",
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write the DatasetDict to (reused when it holds this build; never one holding other files)",
    )
    parser.add_option("--seed", type=int, default=0, metavar="INT", help="seed of the class splits and of every image "
                      "(default 0)")  # fmt: skip
    parser.add_option(
        "--scale", type=float, default=1.0, metavar="FLOAT", help="fraction of each domain's classes, in (0, 1] "
        "(default 1.0; tests use 0.05)"
    )  # fmt: skip
    parser.add_option(
        "--force",
        action="store_true",
        help="rebuild when --output_dir holds a UML-mini build of another seed, scale or builder version",
    )
    add_source_options(parser)
    parser.add_option(
        "--install_missing",
        action="store_true",
        help="apt-get install the Debian packages of the sources that are missing (needs root and apt-get; sources "
        "given by --fonts_dir or --fashion_mnist_dir are not installed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build (or reuse) UML-mini in ``--output_dir`` and print its summary."""
    return run_command(lambda: _build(build_parser().parse_args(argv)))


def _build(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    config = UMLMiniConfig(seed=args.seed, scale=args.scale)
    dataset, manifest, cached = load_or_build_uml_mini(
        args.output_dir, config, args.force, sources=source_folders(args), install_missing=args.install_missing
    )
    what = "reused cached build in" if cached else "built"
    print(f"UML-mini ({what} {args.output_dir}, {time.perf_counter() - start:.1f} s, seed {args.seed}, scale "
          f"{args.scale})")  # fmt: skip
    print(format_summary(manifest["summary"]))
    print("rows: " + ", ".join(f"{split} {dataset[split].num_rows}" for split in SPLITS))


if __name__ == "__main__":
    sys.exit(main())
