"""Making a saved adapter folder fit to publish on the Hub: no local paths, loading code that names the repository.

PEFT records the backbone's ``name_or_path`` as ``base_model_name_or_path``: for a local backbone that is a path on
the machine that trained it, which means nothing to anyone else and tells them about that machine. Before an upload,
each ``adapter_config.json`` in the folder gets the backbone's Hub id there (:func:`~.model_card.backbone_source`:
a timm conversion's source counts) or nothing, and the card's loading code is rewritten to load the adapter from the
repository. Used by ``PeftModel.push_to_hub`` and by training's ``push_to_hub`` (on a copy of the run folder).
"""

from __future__ import annotations

import json
import os

from peft.utils import CONFIG_NAME

from .model_card import backbone_source, update_model_card


def prepare_for_upload(folder: str, repo_id: str) -> None:
    """Rewrite the adapter folder ``folder`` (a copy that is about to be uploaded to ``repo_id``) in place."""
    from .config import PUMAConfig  # deferred: config imports model_card, which this module sits beside

    configs = [root for root, _, files in os.walk(folder) if CONFIG_NAME in files]
    adapters = sorted(root for root in configs if _is_puma(os.path.join(root, CONFIG_NAME)))
    if adapters:
        card_adapter = folder if folder in adapters else adapters[0]
        subfolder = None if card_adapter == folder else os.path.relpath(card_adapter, folder)
        config = PUMAConfig.from_pretrained(card_adapter)  # read before its base model path is rewritten below
        update_model_card(folder, config, subfolder=subfolder, adapter_ref=repo_id)
    for root in configs:  # LoRA's config in a baseline's lora/ records the base model too
        path = os.path.join(root, CONFIG_NAME)
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
        if values.get("base_model_name_or_path"):
            values["base_model_name_or_path"] = backbone_source(values["base_model_name_or_path"]).hub_id
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(values, handle, indent=2, sort_keys=True)


def _is_puma(path: str) -> bool:
    from .registration import LEGACY_SAVED_PEFT_TYPES, PEFT_TYPE

    try:
        with open(path, encoding="utf-8") as handle:
            peft_type = json.load(handle).get("peft_type")
    except (OSError, ValueError, AttributeError):
        return False
    return peft_type == PEFT_TYPE or peft_type in LEGACY_SAVED_PEFT_TYPES
