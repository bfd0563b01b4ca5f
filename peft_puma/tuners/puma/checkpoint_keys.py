"""Canonical names of a PUMA adapter's tensors, and the check that a checkpoint fits a model.

Saved keys name what a tensor *is*, not where a transformers version keeps it: ``puma.layers.3.mlp.down``,
``puma.prompt_pool.keys``, ``puma.head.projection.weight``. They never contain the adapter name, so a checkpoint
loads under any name, and they survive renames of backbone module paths (``vit.encoder.layer.N`` became
``vit.layers.N`` in transformers 5.9). Loading maps every saved key to its place or refuses with the reason.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ...errors import IncompatibleCheckpointError
from .layer import PUMALayer

CANONICAL_PREFIX = "puma."
_LAYER_INDEX = re.compile(r"^puma\.layers\.(\d+)\.")


def model_to_canonical_keys(model: nn.Module, adapter_name: str) -> dict[str, str]:
    """``{model state_dict key: canonical key}`` for every tensor of ``adapter_name`` in ``model``."""
    mapping: dict[str, str] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, PUMALayer):
            continue
        for attr in module.adapter_layer_names:
            container = getattr(module, attr)
            if adapter_name not in container:
                continue
            stem = f"{module_name}.{attr}.{adapter_name}" if module_name else f"{attr}.{adapter_name}"
            canonical = f"{CANONICAL_PREFIX}{module.puma_site}.{attr.removeprefix('puma_')}"
            value = container[adapter_name]
            if isinstance(value, nn.Parameter):
                mapping[stem] = canonical
            else:
                for sub_name, _ in value.named_parameters():
                    mapping[f"{stem}.{sub_name}"] = f"{canonical}.{sub_name}"
    return mapping


def remap_for_load(model: nn.Module, adapter_name: str, checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map canonical checkpoint keys onto ``model``'s keys; refuse, with the reason, a checkpoint that does not fit."""
    to_model = {canonical: key for key, canonical in model_to_canonical_keys(model, adapter_name).items()}
    params = dict(model.named_parameters())
    missing = sorted(set(to_model) - set(checkpoint))
    unexpected = sorted(set(checkpoint) - set(to_model))
    mismatched = [
        f"{key}: checkpoint {tuple(checkpoint[key].shape)}, model {tuple(params[to_model[key]].shape)}"
        for key in sorted(set(checkpoint) & set(to_model))
        if tuple(checkpoint[key].shape) != tuple(params[to_model[key]].shape)
    ]
    if missing or unexpected or mismatched:
        raise IncompatibleCheckpointError(
            _explain_mismatch(checkpoint, to_model, params, missing, unexpected, mismatched)
        )
    return {to_model[key]: value for key, value in checkpoint.items()}


def _explain_mismatch(checkpoint, to_model, params, missing, unexpected, mismatched) -> str:
    reasons = []
    foreign = [k for k in checkpoint if not k.startswith(CANONICAL_PREFIX)]
    if foreign:
        reasons.append(f"it is not a PUMA checkpoint of this library (keys such as {foreign[:3]})")
    saved_head, model_head = checkpoint.get("puma.head.projection.weight"), to_model.get("puma.head.projection.weight")
    if saved_head is not None and model_head is not None and saved_head.shape[1] != params[model_head].shape[1]:
        reasons.append(
            f"it was trained on a backbone of hidden size {saved_head.shape[1]}, this model has "
            f"{params[model_head].shape[1]}"
        )
    saved_layers = {int(m.group(1)) for k in checkpoint if (m := _LAYER_INDEX.match(k))}
    model_layers = {int(m.group(1)) for k in to_model if (m := _LAYER_INDEX.match(k))}
    if saved_layers and model_layers and max(saved_layers) != max(model_layers):
        reasons.append(
            f"it has adapters up to layer {max(saved_layers)}, this model's adapters go up to layer "
            f"{max(model_layers)} "
            "(another depth, or another `layers` setting)"
        )
    details = []
    for title, keys in (("missing from the checkpoint", missing), ("not in the model", unexpected)):
        if keys:
            details.append(f"{len(keys)} key(s) {title}: {keys[:5]}{' ...' if len(keys) > 5 else ''}")
    if mismatched:
        details.append(f"{len(mismatched)} shape mismatch(es): {mismatched[:3]}{' ...' if len(mismatched) > 3 else ''}")
    why = "; ".join(reasons) if reasons else "its tensors do not match this model's PUMA adapter"
    return f"This PUMA checkpoint does not fit the model: {why}. " + " | ".join(details)
