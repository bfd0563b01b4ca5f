"""``python -m peft_puma.search {index,query,app}``: the command line of image search (docs/search.md).

    python -m peft_puma.search index --adapter runs/uml_mini --images photos/ --output_dir photos_index
    python -m peft_puma.search query --index photos_index --images query.jpg --k 10 --grid grid.png
    python -m peft_puma.search app --index photos_index

Every user mistake (a missing index, a folder that is not one, ``--k`` below 1, an unreadable query image with
``--on_error stop``, another adapter than the index's) exits with status 2 and one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..command_line import run_command
from ..config.cli import CommandParser, add_option
from ..data.images import ON_ERROR_CHOICES
from ..evaluation.grid import DEFAULT_THUMBNAIL
from ..inference.options import add_image_size_option, add_image_source_options, add_model_options
from .index import INDEX_TYPES

_ON_ERROR_HELP = (
    "an unreadable image file: stop (default; exit 2 naming it) or skip (go on without it, listed on stderr and in "
    "the output's 'skipped')"
)


def _index_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "index",
        help="embed a gallery and write its search index folder",
        description="Embed a gallery (a folder of images or a saved dataset) and write its search index folder.",
    )
    add_model_options(parser, "embed")
    add_image_source_options(parser)
    add_option(
        parser,
        "--output_dir",
        hidden=["--output"],
        required=True,
        metavar="DIR",
        help="index folder to write: new, empty, or an index this command wrote (replaced whole)",
    )
    parser.add_argument(
        "--index",
        default="flat",
        choices=INDEX_TYPES,
        help="flat (exact, default), hnsw (approximate, graph) or ivf (approximate, cells)",
    )
    parser.add_argument("--hnsw_m", type=int, metavar="INT", help="hnsw: links per vector (default: 32)")
    parser.add_argument(
        "--ef_construction", type=int, metavar="INT", help="hnsw: candidate list while building (default: 100)"
    )
    parser.add_argument(
        "--ef_search", type=int, metavar="INT", help="hnsw: candidate list while searching (default: 128)"
    )
    parser.add_argument("--nlist", type=int, metavar="INT", help="ivf: cells (default: 4 sqrt(N), at most N / 39)")
    parser.add_argument(
        "--nprobe", type=int, metavar="INT", help="ivf: cells scanned per query (default: nlist / 64, at least 16)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="INT", help="ivf: k-means seed (default: 0)")
    parser.add_argument(
        "--batch_size", type=int, default=256, metavar="INT", help="images per forward pass (default: 256)"
    )
    add_image_size_option(parser)
    parser.add_argument(
        "--on_error",
        choices=ON_ERROR_CHOICES,
        default=None,
        help=f"of --images, or of a folder tree or data files as --dataset: {_ON_ERROR_HELP}; without it, what the "
        "--adapter run trained with on the same data",
    )


def _query_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "query",
        help="the top-k index rows of query images",
        description="Embed query images with the index's adapter and find their nearest index rows.",
    )
    parser.add_argument("--index", required=True, metavar="DIR", help="index folder written by the index sub-command")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="PATH", help="query image files (or folders of them)")
    source.add_argument(
        "--query_dataset", metavar="DIR", help="a dataset saved with save_to_disk: query with its --query_rows"
    )
    parser.add_argument(
        "--query_split", default="test", metavar="SPLIT", help="split of --query_dataset (default: test)"
    )
    parser.add_argument(
        "--query_rows", type=int, nargs="+", default=[], metavar="INT", help="row numbers of --query_split to query"
    )
    parser.add_argument(
        "--adapter", metavar="DIR", help="the index's adapter (default: the folder it records); checked by hash"
    )
    parser.add_argument("--k", type=int, default=10, metavar="INT", help="results per query (default: 10)")
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="results JSON to write: new, or results this command wrote (default: printed)",
    )
    parser.add_argument("--grid", metavar="FILE", help="contact sheet PNG to write: each query followed by its top k")
    parser.add_argument(
        "--thumbnail_size",
        type=int,
        default=DEFAULT_THUMBNAIL,
        metavar="INT",
        help=f"grid tiles, pixels, at least 64 (default: {DEFAULT_THUMBNAIL})",
    )
    parser.add_argument(
        "--ef_search", type=int, metavar="INT", help="hnsw: candidate list for this search (default: the index's)"
    )
    parser.add_argument(
        "--nprobe", type=int, metavar="INT", help="ivf: cells scanned for this search (default: the index's)"
    )
    parser.add_argument(
        "--batch_size", type=int, default=256, metavar="INT", help="images per forward pass (default: 256)"
    )
    parser.add_argument(
        "--on_error", choices=ON_ERROR_CHOICES, default=None, help=f"of --images or --query_dataset: {_ON_ERROR_HELP}"
    )


def _app_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "app",
        help="a local web page to query an index (needs the [app] extra)",
        description="Serve a web page (Gradio) to query an index by image and see its nearest images per collection.",
    )
    parser.add_argument("--index", required=True, metavar="DIR", help="index folder written by the index sub-command")
    parser.add_argument(
        "--compare", metavar="DIR", help="a second index of the same images (say --zero_shot): results side by side"
    )
    parser.add_argument(
        "--adapter", metavar="DIR", help="the index's adapter (default: the folder it records); checked by hash"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="address to listen on (default: 127.0.0.1: this machine)"
    )
    parser.add_argument("--port", type=int, metavar="INT", help="port to listen on (default: a free one)")


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m peft_puma.search", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{index,query,app}")
    _index_parser(commands)
    _query_parser(commands)
    _app_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given: list[argparse.Namespace] = []

    def body() -> None:
        given.append(parser.parse_args(argv))
        _run(given[0])

    return run_command(body, interrupted=lambda: interrupted_message(given[0]) if given else "nothing was written.")


def interrupted_message(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves, said for the sub-command that was stopped: an index is built in a staging folder and moved
    into place at the end; query outputs are written whole."""
    if args.command == "index":
        return f"the previous index in {args.output_dir} (if any) is intact: it is replaced only by a complete one."
    if args.command == "query":
        return "earlier --output and --grid files are intact: nothing is replaced until it is complete."
    return "nothing was written."


def _run(args: argparse.Namespace) -> None:
    if args.command == "index":  # each sub-command loads only its own code (the other pulls in faiss)
        from .build import run_index

        run_index(args)
    elif args.command == "query":
        from .query import run_query

        run_query(args)
    else:
        from .app import run_app

        run_app(args)
