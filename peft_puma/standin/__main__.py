"""``python -m peft_puma.standin --output_dir assets/uml_mini_vit``: pretrain the stand-in ViT (:mod:`.pretraining`),
measure it zero-shot on UML-mini's validation split, and save it in HF format."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

import torch
from transformers import ViTImageProcessorPil, ViTModel

from ..command_line import run_command
from ..data.uml_mini.command_options import CommandParser, add_source_options, source_folders
from ..data.uml_mini.sources import SourceFolders
from ..errors import InvalidInputError
from .disjointness import letters_near_threshold
from .pool import PoolSize, build_pretraining_pool
from .pretraining import (
    BACKBONE_LAYOUT,
    MiniViTRecipe,
    ZeroShotSplit,
    _readme,
    pretrain,
    save_backbone,
    zero_shot_recall,
)


def build_parser() -> CommandParser:
    """The options: where the backbone goes, the recipe's knobs, and the UML-mini build it is measured on."""
    parser = CommandParser(prog="python -m peft_puma.standin", description=DESCRIPTION, epilog=EPILOG)
    parser.add_option(
        "--output_dir",
        "--out",
        required=True,
        metavar="DIR",
        help="folder for config.json, model.safetensors, the processor, pretraining.json and README.md (new, empty or "
        "a backbone of this command)",
    )
    parser.add_option(
        "--seed", type=int, default=MiniViTRecipe.seed, metavar="INT",
        help=f"seed of the pool, and of the initialisation and the batches unless --training_seed is given "
        f"(default {MiniViTRecipe.seed})",
    )  # fmt: skip
    parser.add_option(
        "--training_seed", type=int, default=None, metavar="INT",
        help="seed of the initialisation, the batch order and the augmentation alone, on the pool of --seed: "
        "backbones that differ only in their pretraining draws (default: --seed)",
    )  # fmt: skip
    parser.add_option(
        "--epochs", type=int, default=MiniViTRecipe.epochs, metavar="INT",
        help=f"pretraining epochs (default {MiniViTRecipe.epochs})",
    )  # fmt: skip
    parser.add_option("--max_steps", type=int, default=None, metavar="INT", help="stop after this many steps (quick "
                      "checks; default: all epochs)")  # fmt: skip
    parser.add_option(
        "--pool_scale", type=float, default=1.0, metavar="FLOAT",
        help="shrink the pretraining pool to this fraction, in (0, 1] (quick checks; default 1.0)",
    )  # fmt: skip
    parser.add_option(
        "--uml_mini_dir", "--uml_mini", "--uml-mini", default=".cache/uml_mini", metavar="DIR",
        help="the UML-mini build the zero-shot record is measured on, built there where the folder does not exist "
        "(default .cache/uml_mini)",
    )  # fmt: skip
    add_source_options(parser)
    parser.add_option(
        "--no_recolour_glyphs",
        action="store_true",
        help="keep every glyph image in the colours it was rendered in (the ablation of the colour redraw)",
    )
    parser.add_option("--no_eval", action="store_true", help="skip the zero-shot evaluation on UML-mini")
    parser.add_option(
        "--remeasure",
        action="store_true",
        help="do not pretrain: measure the backbone already in --output_dir zero-shot on the current UML-mini build's "
        "validation split and rewrite its record and README (after a UML-mini builder version change)",
    )
    return parser


DESCRIPTION = """Pretrain the stand-in ViT (a tiny ViT for UML-mini, from classes disjoint from UML-mini's), measure it
zero-shot on UML-mini's validation split, and save it in HF format (docs/uml_mini.md, "The stand-in backbone")."""
EPILOG = """--fonts_dir and --fashion_mnist_dir (or their environment variables) serve both the pretraining pool and a
UML-mini build this command makes; the same files give the same pool (docs/uml_mini.md). Exit status: 0 done, 2 a
mistake or a missing source (one line), 130 interrupted."""


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: pretrain the mini ViT, measure it zero-shot on UML-mini, save it in HF format."""
    command = "python -m peft_puma.standin " + " ".join(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: _pretrain(build_parser().parse_args(argv), command))


def _pretrain(args: argparse.Namespace, command: str) -> None:
    owned = BACKBONE_LAYOUT.is_owned(args.output_dir)  # refuse someone else's folder before an hour of pretraining
    sources = source_folders(args)
    if args.remeasure:
        if not owned:
            raise InvalidInputError(
                f"{args.output_dir} holds no backbone written by this command; nothing to remeasure."
            )
        _remeasure(args.output_dir, args.uml_mini_dir, sources)
        return
    # The build the evaluation reads is checked (or made) before the pretraining, not after it.
    evaluation = None if args.no_eval else _open_evaluation_data(args.uml_mini_dir, sources)
    recipe = MiniViTRecipe(
        seed=args.seed,
        training_seed=args.training_seed,
        epochs=args.epochs,
        max_steps=args.max_steps,
        pool_scale=args.pool_scale,
        recolour_glyphs=not args.no_recolour_glyphs,
    )
    start = time.perf_counter()
    pool = build_pretraining_pool(recipe.seed, PoolSize().scaled(recipe.pool_scale), sources)
    print(f"pretraining pool: {len(pool.labels)} images, {len(pool.class_names)} classes "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    near = letters_near_threshold(pool.class_names)
    for pool_class, letter, overlap, face in near:  # admitted, but close: for a person to look at
        print(f"near the letter threshold: {pool_class} and {letter}, silhouette {overlap:.4f} in {face}")
    probe = None if evaluation is None else evaluation[0].score
    model, processor, record = pretrain(recipe, pool, probe=probe)
    metadata = {
        "command": command,
        "recipe": asdict(recipe),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "pool": pool.source_counts(),
        "pool_classes": pool.class_names,  # every class, so the disjointness test checks what these weights saw
        "letters_near_threshold": [list(row) for row in near],
        "pool_sources": sources.describe(),  # a record only: the same files give the same pool wherever they lie
        "pretraining": record,
    }
    if evaluation is not None:
        metadata.update(_zero_shot_record(model, processor, evaluation))
    save_backbone(args.output_dir, model, processor, metadata)
    print(_readme(metadata))


def _open_evaluation_data(uml_mini: str, sources: SourceFolders) -> tuple[ZeroShotSplit, dict]:
    """The UML-mini validation split the zero-shot record is measured on, and what the record says of its build."""
    from ..data.schema import VALIDATION_SPLIT
    from ..data.uml_mini import open_uml_mini, provenance  # only with the evaluation; UML-mini pulls in its sources

    data, manifest = open_uml_mini(uml_mini, sources=sources)
    return ZeroShotSplit.of(data[VALIDATION_SPLIT]), provenance(uml_mini, manifest)


def _zero_shot_record(model: ViTModel, processor: ViTImageProcessorPil, evaluation: tuple[ZeroShotSplit, dict]) -> dict:
    """The zero-shot part of the record, on the validation split: the backbone is a choice (its pretraining budget,
    its size), and choices are made on validation; the test split is left to the final runs."""
    from ..data.schema import VALIDATION_SPLIT

    validation, data_source = evaluation
    return {
        "zero_shot_recall_at_1": zero_shot_recall(model, processor, validation),
        "zero_shot_split": VALIDATION_SPLIT,
        "zero_shot_data": data_source,
    }


def _remeasure(folder: str, uml_mini: str, sources: SourceFolders) -> int:
    """Rewrite the zero-shot part of a committed backbone's record for the current UML-mini build; the weights, the
    processor and the pretraining record stay as they are (the weights are bitwise unchanged)."""
    with open(os.path.join(folder, "pretraining.json"), encoding="utf-8") as handle:
        metadata = json.load(handle)
    model = ViTModel.from_pretrained(folder, add_pooling_layer=False).eval()
    processor = ViTImageProcessorPil.from_pretrained(folder)
    metadata.update(_zero_shot_record(model, processor, _open_evaluation_data(uml_mini, sources)))
    save_backbone(folder, model, processor, metadata)
    print(_readme(metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
