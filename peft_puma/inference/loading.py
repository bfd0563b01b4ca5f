"""Loading a trained run (or the bare backbone) for inference: the model in eval mode and its image processor.

A run's folder is what training writes (docs/training.md): the PUMA adapter as PEFT saves it, ``lora/`` or
``backbone/`` for the baselines that train them, and the run file naming the backbone. The zero-shot baseline of the
paper's Table 2 (docs/spec.md section 7) is the frozen backbone's normalised CLS features: PUMA's linear head with
the adapter switched off (:class:`AdaptersOff`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from peft import get_peft_model
from torch import nn

from ..backbones.fingerprint import backbone_fingerprint
from ..backbones.loading import load_backbone
from ..errors import IncompatibleCheckpointError, InvalidConfigError, PUMAError
from ..runs.layout import ADAPTER_FILES, RUN_FILE
from ..runs.run_file import read_run_file
from ..runs.saving import load_trained
from ..tuners.puma import fuse_for_inference
from ..tuners.puma.config import PUMAConfig


class AdaptersOff(nn.Module):
    """A PUMA model with its adapter disabled: the frozen backbone's normalised CLS features (the paper's zero-shot
    baseline, docs/spec.md section 7 table)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> Any:
        with self.model.disable_adapter():
            return self.model(pixel_values=pixel_values)


def check_adapter_source(adapter: str) -> None:
    """Refuse at once an adapter path that cannot be loaded, rather than after the Hub's retries.

    A local folder must hold the adapter's files; a path that is clearly local (it exists, or its parent folder does,
    or it starts with ``.``, ``/`` or ``~``) but is missing is an error; anything else is taken as a Hub id.
    """
    if os.path.isdir(adapter):
        missing = [name for name in ADAPTER_FILES if not os.path.isfile(os.path.join(adapter, name))]
        if missing:
            raise IncompatibleCheckpointError(
                f"{adapter} holds no complete adapter (missing {', '.join(missing)}); give the output_dir of a "
                "finished training run or a folder written by save_pretrained."
            )
        return
    if os.path.exists(adapter):
        raise IncompatibleCheckpointError(f"{adapter} is a file; give the adapter's folder (the training output_dir).")
    parent = os.path.dirname(os.path.normpath(adapter))
    if adapter.startswith((".", "/", "~")) or (parent and os.path.isdir(parent)):
        raise IncompatibleCheckpointError(
            f"The adapter folder {adapter} does not exist; give the output_dir of a finished training run "
            "(or a Hub repository id)."
        )


def load_for_inference(
    adapter: str | None = None,
    backbone: str | None = None,
    backbone_format: str | None = None,
    *,
    zero_shot: bool = False,
    allow_other_backbone: bool = False,
    fuse: bool = True,
) -> tuple[nn.Module, Any, int | None]:
    """``(model in eval mode, image processor, image size)`` for embedding images.

    ``adapter``: a folder written by training (or by ``save_pretrained``); its backbone is read from the run file
    (:mod:`peft_puma.runs.run_file`: the recorded folder is found from any working directory) or from
    ``adapter_config.json`` unless ``backbone`` is given. ``zero_shot``: the frozen backbone alone (``adapter`` may then
    be omitted). The backbone's weights are compared with the fingerprint the run recorded: an adapter on other weights
    of the same shape would give wrong embeddings without any error, so it is refused unless
    ``allow_other_backbone``. ``fuse`` (default): a trained adapter runs fused into the frozen projections
    (:func:`peft_puma.fuse_for_inference`, docs/fusion.md): the same embeddings to float rounding, at the cost of
    its FLOPs; the model is eval-only then.
    """
    if adapter is not None:
        check_adapter_source(adapter)
    run = read_run_file(adapter) if adapter else None
    image_size = run.image_size if run else None
    if backbone is None and run is not None:
        backbone, backbone_format = run.backbone_source(adapter), backbone_format or run.backbone_format
    if backbone is None and adapter is not None:
        backbone = PUMAConfig.from_pretrained(adapter).base_model_name_or_path
    if not backbone:
        raise InvalidConfigError("Give the backbone (--backbone): the adapter folder does not record it.")
    network, processor = load_backbone(backbone, backbone_format or "auto")
    if run is not None and run.backbone_fingerprint and not (zero_shot or allow_other_backbone):
        _require_trained_weights(network, backbone, adapter, run.backbone_fingerprint, run.backbone)
    if adapter is None:
        if not zero_shot:
            raise InvalidConfigError("Give an adapter folder, or ask for the zero-shot backbone (--zero_shot).")
        model: nn.Module = get_peft_model(network, PUMAConfig.from_preset("linear"))
    else:
        try:
            model = load_trained(network, adapter)
        except PUMAError:
            raise
        except Exception as error:  # safetensors' SafetensorError for a truncated or damaged weights file, ...
            raise IncompatibleCheckpointError(
                f"The adapter in {adapter} cannot be loaded ({type(error).__name__}: {error}); its files are damaged "
                "or incomplete. Save or train it again."
            ) from None
        if run is not None:
            _require_trained_scale(model, adapter, run.adapter_scale)
    if zero_shot:
        model = AdaptersOff(model)  # needs the PeftModel's disable_adapter: never fused
    elif adapter is not None and fuse:
        model = fuse_for_inference(model)
    return model.eval(), processor, image_size


def _require_trained_scale(model: nn.Module, adapter: str, trained: float | None) -> None:
    """Refuse an adapter_config.json whose fixed ``scale`` is not the one the run trained with (a hand edit): the
    other fields that shape the model are checked by the tensors' shapes, ``scale`` only here, against the run file.
    A learned scale (``train_scale``) is loaded with the tensors and is not compared."""
    config = getattr(model, "peft_config", {}).get("default")
    loaded = getattr(config, "scale", None)
    if trained is None or loaded is None or getattr(config, "train_scale", False):
        return
    if not math.isclose(float(loaded), float(trained), rel_tol=1e-9):
        raise IncompatibleCheckpointError(
            f"The adapter in {adapter} says scale {loaded!r} in adapter_config.json, but its run trained it with scale "
            f"{trained!r} (recorded in {RUN_FILE}): every embedding would change. Set scale back to {trained!r}."
        )


def _require_trained_weights(network: nn.Module, source: str, adapter: str, recorded: str, trained_on: str) -> None:
    """Refuse a backbone whose weights are not those the adapter was trained on (same shapes, other values)."""
    loaded = backbone_fingerprint(network)
    if loaded != recorded:
        raise IncompatibleCheckpointError(
            f"The backbone {source!r} holds other weights than the adapter {adapter} was trained on ({trained_on!r}: "
            f"fingerprint {recorded[:19]}...; loaded {loaded[:19]}...): its embeddings would be wrong. Give the "
            "backbone it was trained on, or pass --allow_other_backbone if you mean it."
        )
