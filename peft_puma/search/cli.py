"""``python -m peft_puma.search {index,query}``: the command line of image search (docs/search.md).

    python -m peft_puma.search index --adapter runs/uml_mini --images photos/ --output photos_index
    python -m peft_puma.search query --index photos_index --images query.jpg --k 10 --grid grid.png

Every user mistake (a missing index, a folder that is not one, ``--k`` below 1, an unreadable query image with
``--on_error stop``, another adapter than the index's) exits with status 2 and one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..command_line import run_command
from ..data.images import ON_ERROR_CHOICES
from ..evaluation.grid import DEFAULT_THUMBNAIL
from ..inference.options import add_image_source_options, add_model_options
from .index import INDEX_TYPES

_ON_ERROR_HELP = (
    "an unreadable image file: stop (default; exit 2 naming it) or skip (go on without it, listed on stderr and in "
    "the output's 'skipped')"
)


def _index_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("index", help="embed a gallery and write its search index folder")
    add_model_options(parser, "embed")
    add_image_source_options(parser)
    parser.add_argument("--output", required=True, help="index folder to write (new, empty, or an index)")
    parser.add_argument("--index", default="flat", choices=INDEX_TYPES, help="flat (exact, default), hnsw or ivf")
    parser.add_argument("--hnsw_m", type=int, help="hnsw: links per vector (default 32)")
    parser.add_argument("--ef_construction", type=int, help="hnsw: candidate list while building (default 100)")
    parser.add_argument("--ef_search", type=int, help="hnsw: candidate list while searching (default 128)")
    parser.add_argument("--nlist", type=int, help="ivf: cells (default 4 sqrt(N), at most N / 39)")
    parser.add_argument("--nprobe", type=int, help="ivf: cells scanned per query (default nlist / 64, at least 16)")
    parser.add_argument("--seed", type=int, default=0, help="ivf: k-means seed (default 0)")
    parser.add_argument("--batch_size", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--image_size", type=int, default=None, help="default: the adapter's training resolution")
    parser.add_argument("--on_error", choices=ON_ERROR_CHOICES, default=None, help=f"with --images, {_ON_ERROR_HELP}")


def _query_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("query", help="the top-k index rows of query images")
    parser.add_argument("--index", required=True, help="index folder written by the index sub-command")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", help="query image files (or folders of them)")
    source.add_argument("--query_dataset", help="a dataset saved with save_to_disk: query with its --query_rows")
    parser.add_argument("--query_split", default="test", help="split of --query_dataset (default: test)")
    parser.add_argument("--query_rows", type=int, nargs="+", default=[], help="row numbers of --query_split")
    parser.add_argument("--adapter", help="the index's adapter (default: the folder it records); checked by hash")
    parser.add_argument("--k", type=int, default=10, help="results per query (default 10)")
    parser.add_argument("--output", help="results JSON to write (default: printed)")
    parser.add_argument("--grid", help="contact sheet PNG to write: each query followed by its top k")
    parser.add_argument("--thumbnail_size", type=int, default=DEFAULT_THUMBNAIL, help="grid tiles, pixels (>= 64)")
    parser.add_argument("--ef_search", type=int, help="hnsw: candidate list for this search (default: the index's)")
    parser.add_argument("--nprobe", type=int, help="ivf: cells scanned for this search (default: the index's)")
    parser.add_argument("--batch_size", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--on_error", choices=ON_ERROR_CHOICES, default=None, help=f"with --images, {_ON_ERROR_HELP}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m peft_puma.search", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _index_parser(commands)
    _query_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    if args.command == "index":  # each sub-command loads only its own code (the other pulls in faiss)
        from .build import run_index

        run_index(args)
    else:
        from .query import run_query

        run_query(args)
