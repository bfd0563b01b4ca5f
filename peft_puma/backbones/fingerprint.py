"""A fingerprint of a backbone's weights, so that a run records *which* weights it adapted, not only their name.

A run's config names its backbone by a path or a Hub id. The name stays when the weights behind it change (a
stand-in backbone pretrained again into the same folder, a Hub repository updated), and a run resumed or reused under
that name would silently mix two backbones: the adapter of one, the frozen weights of the other. The fingerprint is
taken from the loaded tensors, so it is the same for a folder, a Hub id or a timm checkpoint holding the same weights,
and it differs as soon as one tensor does.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

FINGERPRINT_PREFIX = "sha256:"


def backbone_fingerprint(backbone: nn.Module) -> str:
    """``"sha256:<hex>"`` over every tensor of ``backbone``'s state dict: its name, dtype, shape and bytes.

    Taken on the backbone as loaded, before any adapter is added (PEFT's wrapping renames and adds tensors). About
    0.2 s for ViT-S/16's 22M parameters on a CPU.
    """
    digest = hashlib.sha256()
    for name, tensor in backbone.state_dict().items():
        values = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{values.dtype}|{tuple(values.shape)}\n".encode())
        digest.update(values.reshape(-1).view(torch.uint8).numpy().tobytes())
    return FINGERPRINT_PREFIX + digest.hexdigest()


def fingerprint_of(source: str, backbone_format: str = "auto") -> str:
    """The fingerprint of the backbone ``source`` loads to now (as the trainer loads it), for checking a saved run
    against the weights a new run would use. Not cached: the weights behind a name are what may change."""
    from .loading import load_backbone

    backbone, _ = load_backbone(source, backbone_format)
    return backbone_fingerprint(backbone)
