"""Convert a timm ViT checkpoint (safetensors) to an HF ViT folder (docs/backbones.md):
``python -m peft_puma.backbones.timm_vit SOURCE --out DIR [--with_head] [--num_heads N]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from transformers import ViTForImageClassification, ViTModel

from ...command_line import run_command
from . import convert_timm_vit_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m peft_puma.backbones.timm_vit SOURCE --out DIR [--with_head] [--num_heads N]``."""
    parser = argparse.ArgumentParser(description="Convert a timm ViT checkpoint (safetensors) to an HF ViT folder.")
    parser.add_argument("source", help="Hub id (timm/...), folder with model.safetensors, or a .safetensors file")
    parser.add_argument("--out", required=True, help="output folder for config.json, model.safetensors, preprocessor")
    parser.add_argument(
        "--with_head", "--with-head", action="store_true", help="write ViTForImageClassification (timm head)"
    )
    parser.add_argument(
        "--num_heads", "--num-heads", type=int, default=None, help="attention heads, for non-standard widths"
    )
    parser.add_argument("--revision", default=None, help="Hub revision")
    args = parser.parse_args(argv)
    return run_command(lambda: _convert(args))


def _convert(args: argparse.Namespace) -> None:
    hub_kwargs = {"revision": args.revision} if args.revision else {}
    out = convert_timm_vit_checkpoint(
        args.source,
        args.out,
        model_class=ViTForImageClassification if args.with_head else ViTModel,
        num_attention_heads=args.num_heads,
        **hub_kwargs,
    )
    print(out)


if __name__ == "__main__":
    raise SystemExit(main())
