"""Backbones for PUMA: loading the paper's timm ViT checkpoints into HF classes, and the small offline stand-in ViT.

Exports load lazily, so ``import peft_puma.backbones`` costs nothing until a loader is used.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "load_timm_vit": ".timm_vit",
    "load_timm_vit_with_processor": ".timm_vit",
    "convert_timm_vit_checkpoint": ".timm_vit",
    "convert_timm_vit_state_dict": ".timm_vit",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
