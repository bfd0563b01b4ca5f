"""``python -m peft_puma.embed``: images of a folder or of a dataset -> an embeddings file (safetensors).

    python -m peft_puma.embed --adapter runs/uml_mini --images photos/ --output photos.safetensors
    python -m peft_puma.embed --adapter runs/uml_mini --dataset data/uml_mini --split test --output test.safetensors

The file holds ``embeddings`` (N x D, float32, L2-normalised), plus ``labels`` for a dataset; its metadata holds the
row descriptions as JSON (``paths`` for a folder; ``datasets`` and ``roles`` for a dataset).

Unreadable images of a folder (not an image, truncated, corrupt, a decompression bomb) are found before the model loads,
by fully decoding every file once (on the main process; the verdict is shared with the others, so every process embeds
the same rows). ``--on_error stop`` (default) exits with status 2 naming the first bad file; ``--on_error skip`` embeds
the readable images only, prints the skipped files with their reasons on stderr and records them in the file's
metadata as ``skipped`` (a JSON list of ``{"path", "reason"}``; ``[]`` when none was skipped). Other input mistakes (a
missing ``--images`` folder, an ``--output`` that is a folder or cannot be written) also exit with status 2 before the
model loads, and the output file is written whole or not at all.

From Python: :func:`peft_puma.inference.embedding.embed_folder` (``on_error="stop"`` or ``"skip"``; returns
``(embeddings, paths)`` of the embedded images) and ``embed_dataset``; :func:`peft_puma.data.images.check_folder`
(``(good, bad)`` of a folder: readable relative paths and :class:`~peft_puma.data.images.BadImage` records, to report
the skipped files or to pass on as ``checked=``); :mod:`peft_puma.inference.embeddings_file` (``save_embeddings``,
``load_embeddings``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch
from accelerate import Accelerator

from .backbones.loading import check_resolution
from .command_line import run_command
from .config.cli import CommandParser
from .data.images import ON_ERROR_CHOICES, check_folder, report_skipped, require_readable
from .data.saved import load_split
from .data.schema import column_values
from .data.transforms import MIN_IMAGE_SIZE, make_eval_transform
from .inference.embedding import embed_dataset, embed_folder
from .inference.embeddings_file import check_output_path, save_embeddings
from .inference.loading import load_for_inference
from .inference.options import (
    add_image_size_option,
    add_image_source_options,
    add_model_options,
    require_at_least,
)
from .inference.run_choices import followed_on_error
from .runs.split_file import read_run_split

_ROW_FIELDS = {"dataset": "datasets", "role": "roles"}  # dataset columns kept in the file's metadata


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_command(lambda: _embed(parser.parse_args(argv)), interrupted=INTERRUPTED)


# The file is written whole at the end (through a temporary file, then renamed).
INTERRUPTED = "nothing was written; an earlier file at --output is intact (outputs are written whole or not at all)."


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m peft_puma.embed", description=__doc__.split("\n\n")[0])
    add_model_options(parser, "embed")
    add_image_source_options(parser)
    parser.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="embeddings file to write (.safetensors): new, or one this command wrote",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=256,
        metavar="INT",
        help="images per forward pass in each process (default: 256)",
    )
    add_image_size_option(parser)
    parser.add_argument(
        "--on_error",
        choices=ON_ERROR_CHOICES,
        default=None,
        help="an unreadable image file (of --images, or of a folder tree or data files given as --dataset): stop "
        "(exit 2 naming it, nothing written) or skip (embed the others, list the skipped files on stderr; for "
        "--images also in the output's 'skipped' metadata); default: what the --adapter run trained with on the same "
        "data, else stop",
    )
    return parser


def _embed(args: argparse.Namespace) -> None:
    on_error = followed_on_error(args.on_error, args.adapter, args.images or args.dataset)
    require_at_least("--batch_size", args.batch_size, 1)
    require_at_least("--image_size", args.image_size, MIN_IMAGE_SIZE)
    check_output_path(args.output)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    try:
        _embed_with(args, on_error, accelerator)
    finally:
        accelerator.end_training()  # under several processes: leave the process group before exiting


def _embed_with(args: argparse.Namespace, on_error: str, accelerator: Accelerator) -> None:
    check = None
    if args.images:  # before the model loads: a bad file stops the run at once, and every process agrees
        check = check_folder(args.images, accelerator=accelerator, progress=accelerator.is_main_process)
        if check.bad and accelerator.is_main_process and (on_error == "skip" or not check.good):
            report_skipped(args.images, check)
        require_readable(args.images, check, on_error, skip_hint="--on_error skip")
    model, processor, image_size = load_for_inference(
        args.adapter,
        args.backbone,
        args.backbone_format,
        zero_shot=args.zero_shot,
        allow_other_backbone=args.allow_other_backbone,
    )
    model.to(accelerator.device)
    transform = make_eval_transform(args.image_size or image_size, image_processor=processor)
    check_resolution(model, transform.image_size)
    if check is not None:
        embeddings, paths = embed_folder(
            model,
            args.images,
            transform,
            on_error=on_error,
            checked=check,
            batch_size=args.batch_size,
            accelerator=accelerator,
        )
        rows: dict[str, Any] = {"paths": paths, "skipped": [item.as_dict() for item in check.bad]}
        labels = None
    else:
        dataset = load_split(args.dataset, args.split, read_run_split(args.adapter), on_error)  # the run's split
        embeddings = embed_dataset(model, dataset, transform, batch_size=args.batch_size, accelerator=accelerator)
        columns = set(dataset.column_names)
        labels = column_values(dataset, "label") if "label" in columns else None
        rows = {plural: column_values(dataset, name) for name, plural in _ROW_FIELDS.items() if name in columns}
    if accelerator.is_main_process:
        save_embeddings(args.output, embeddings, labels, **rows)
        skipped = f" ({len(check.bad)} unreadable image(s) skipped, listed above)" if check and check.bad else ""
        print(f"{embeddings.shape[0]} embeddings of size {embeddings.shape[1]} written to {args.output}{skipped}")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    sys.exit(main())
