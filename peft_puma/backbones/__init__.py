"""Backbones for PUMA: loading the paper's timm ViT checkpoints into HF classes, and the small offline stand-in ViT."""
