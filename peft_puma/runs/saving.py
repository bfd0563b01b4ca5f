"""Saving a trained model into a run folder and rebuilding it from there: the PUMA adapter as PEFT saves it, plus
``lora/`` (LoRA's tensors) or ``backbone/`` (a fine-tuned backbone) for the baselines that train them."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model_state_dict, inject_adapter_in_model
from peft import set_peft_model_state_dict as _set_lora_state
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import IncompatibleCheckpointError
from ..tuners.puma.config import SAFETENSORS_WEIGHTS_NAME
from .layout import BACKBONE_FOLDER, LORA_FOLDER

LORA_ADAPTER = "lora"


@contextlib.contextmanager
def puma_over_lora() -> Iterator[None]:
    """Silence PEFT's warnings about wrapping a backbone that already carries LoRA: the LoRA baseline layers PUMA's
    head on LoRA's backbone on purpose, and those warnings ("already found a peft_config", "modify a model with PEFT
    for a second time") would tell its user that something went wrong when nothing did."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        warnings.filterwarnings("ignore", message="You are trying to modify a model with PEFT for a second time")
        yield


def save_trained(model: PeftModel, directory: str, **save_kwargs: Any) -> None:
    """Write the PUMA adapter (``save_pretrained``), plus ``lora/`` or ``backbone/`` when the method trained them."""
    model.save_pretrained(directory, **save_kwargs)
    base = model.get_base_model()
    if LORA_ADAPTER in getattr(base, "peft_config", {}):
        folder = os.path.join(directory, LORA_FOLDER)
        os.makedirs(folder, exist_ok=True)
        base.peft_config[LORA_ADAPTER].save_pretrained(folder)
        # LoRA targets the attention and MLP linears, never an embedding: PEFT's "auto" would only ask the Hub.
        state = get_peft_model_state_dict(base, adapter_name=LORA_ADAPTER, save_embedding_layers=False)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()}, os.path.join(folder, SAFETENSORS_WEIGHTS_NAME)
        )
    if any(p.requires_grad for n, p in base.named_parameters() if "puma_" not in n and "lora_" not in n):
        base.save_pretrained(os.path.join(directory, BACKBONE_FOLDER), state_dict=_plain_backbone_state(base))


def _plain_backbone_state(base: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own tensors under their original names (PUMA's wrappers keep the wrapped module as base_layer)."""
    state = {}
    for key, value in base.state_dict().items():
        if "puma_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value.detach().cpu().contiguous()
    return state


def load_trained(backbone: nn.Module, directory: str, **kwargs: Any) -> PeftModel:
    """The model saved by :func:`save_trained` in ``directory``, rebuilt on ``backbone`` (a fresh, frozen copy of the
    backbone it was trained on), in eval mode."""
    backbone_folder = os.path.join(directory, BACKBONE_FOLDER)
    if os.path.isdir(backbone_folder):
        backbone = type(backbone).from_pretrained(backbone_folder)
    lora_folder = os.path.join(directory, LORA_FOLDER)
    if os.path.isdir(lora_folder):
        lora = LoraConfig.from_pretrained(lora_folder)
        inject_adapter_in_model(lora, backbone, adapter_name=LORA_ADAPTER)
        result = _set_lora_state(
            backbone, load_file(os.path.join(lora_folder, SAFETENSORS_WEIGHTS_NAME)), adapter_name=LORA_ADAPTER
        )
        missing = [key for key in result.missing_keys if "lora_" in key]
        if missing or result.unexpected_keys:
            raise IncompatibleCheckpointError(
                f"The LoRA weights in {lora_folder} do not fit this backbone: missing {missing[:5]}, unexpected "
                f"{list(result.unexpected_keys)[:5]}."
            )
    with puma_over_lora():
        model = PeftModel.from_pretrained(backbone, directory, **kwargs)
    return model.eval()


# What save_pretrained writes in the baselines' folders (lora/: LoRA's config and tensors; backbone/: a fine-tuned
# backbone, sharded when large).
_SAVED_NAMES = re.compile(
    r"^(adapter_config\.json|adapter_model\.safetensors|README\.md|config\.json|generation_config\.json"
    r"|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json)$"
)


def foreign_saved_entries(output_dir: str) -> list[str]:
    """Paths under ``output_dir``'s ``lora/`` and ``backbone/`` that :func:`save_trained` did not write there:
    ``--overwrite_output_dir`` refuses a run folder with any, so that it never deletes a user's file."""
    found = []
    for folder in (LORA_FOLDER, BACKBONE_FOLDER):
        path = os.path.join(output_dir, folder)
        if os.path.isdir(path):
            found += [os.path.join(folder, name) for name in sorted(os.listdir(path)) if not _SAVED_NAMES.match(name)]
    return found
