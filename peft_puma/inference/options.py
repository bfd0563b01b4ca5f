"""Command-line options shared by the commands that run a trained model (``evaluate``, ``embed``, ``search index``):
which model, and which images. One definition, so the commands spell and explain them alike."""

from __future__ import annotations

import argparse

from ..errors import InvalidConfigError


def add_model_options(parser: argparse.ArgumentParser, use: str = "embed") -> None:
    """``--adapter``, ``--backbone``, ``--backbone_format``, ``--zero_shot``; ``use`` completes the last one's help."""
    parser.add_argument("--adapter", metavar="DIR", help="trained adapter folder (the training output_dir) or Hub id")
    parser.add_argument(
        "--backbone", metavar="DIR_OR_ID", help="backbone source (default: the one the adapter was trained on)"
    )
    parser.add_argument(
        "--backbone_format",
        default=None,
        choices=("auto", "transformers", "timm"),
        help="how to read the backbone (default: auto, from its files)",
    )
    parser.add_argument("--zero_shot", action="store_true", help=f"{use} with the frozen backbone (adapter off)")
    parser.add_argument(
        "--allow_other_backbone",
        action="store_true",
        help="use the adapter with a backbone whose weights differ from those it was trained on (refused by "
        "default: its embeddings would be wrong)",
    )


def add_image_source_options(parser: argparse.ArgumentParser) -> None:
    """``--images DIR`` or ``--dataset DIR`` (exactly one), and ``--split`` of a dataset."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of image files (searched recursively)")
    source.add_argument(
        "--dataset",
        "--dataset_path",  # the name train and evaluate give the same folder
        "--uml_mini_dir",  # a UML-mini build is such a DatasetDict
        metavar="DIR",
        dest="dataset",
        help="a dataset saved with save_to_disk (a Dataset or a DatasetDict, e.g. a UML-mini build)",
    )
    parser.add_argument("--split", default="test", metavar="NAME", help="split of a DatasetDict (default: test)")


def add_image_size_option(parser: argparse.ArgumentParser) -> None:
    """``--image_size INT``: the input resolution, by default the one the adapter was trained at."""
    parser.add_argument(
        "--image_size",
        type=int,
        default=None,
        metavar="INT",
        help="input resolution in pixels (default: the adapter's training resolution)",
    )


def require_at_least(option: str, value: int | None, minimum: int) -> None:
    """Refuse a number below ``minimum`` (``--batch_size 0``, ``--image_size 3``) before any work, in one line."""
    if value is not None and value < minimum:
        raise InvalidConfigError(f"{option} must be at least {minimum}; got {value}.")
