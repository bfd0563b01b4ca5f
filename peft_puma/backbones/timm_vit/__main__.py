"""Convert a timm ViT checkpoint (safetensors) to an HF ViT folder (docs/backbones.md):
``python -m peft_puma.backbones.timm_vit SOURCE --output_dir DIR [--with_head] [--num_heads N]`` (``--out`` is the old
spelling of ``--output_dir``, still accepted)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from transformers import ViTForImageClassification, ViTModel

from ...command_line import run_command
from ...config.cli import CommandParser, add_option
from . import convert_timm_vit_checkpoint


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="python -m peft_puma.backbones.timm_vit",
        description="Convert a timm ViT checkpoint (safetensors) to an HF ViT folder.",
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="Hub id (timm/...), folder with model.safetensors, or a .safetensors file"
    )
    add_option(
        parser,
        "--output_dir",
        hidden=["--out"],
        required=True,
        metavar="DIR",
        help="folder to write config.json, model.safetensors and the image processor into: new, empty, or one this "
        "converter wrote (replaced whole)",
    )
    add_option(
        parser,
        "--with_head",
        hidden=["--with-head"],
        action="store_true",
        help="write ViTForImageClassification with timm's classifier head (default: ViTModel, no head)",
    )
    add_option(
        parser,
        "--num_heads",
        hidden=["--num-heads"],
        type=int,
        default=None,
        metavar="INT",
        help="attention heads, needed only when neither the architecture name nor a standard width gives them "
        "(default: inferred)",
    )
    parser.add_argument("--revision", default=None, metavar="REVISION", help="Hub revision (branch, tag or commit)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m peft_puma.backbones.timm_vit SOURCE --output_dir DIR [--with_head] [--num_heads N]``."""
    parser = build_parser()
    return run_command(lambda: _convert(parser.parse_args(argv)))


def _convert(args: argparse.Namespace) -> None:
    hub_kwargs = {"revision": args.revision} if args.revision else {}
    out = convert_timm_vit_checkpoint(
        args.source,
        args.output_dir,
        model_class=ViTForImageClassification if args.with_head else ViTModel,
        num_attention_heads=args.num_heads,
        **hub_kwargs,
    )
    print(out)


if __name__ == "__main__":
    raise SystemExit(main())
