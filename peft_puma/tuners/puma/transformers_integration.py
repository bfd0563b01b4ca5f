"""transformers' own adapter API (``load_adapter``, ``add_adapter``, ``from_pretrained(<adapter>)``) refuses PUMA.

transformers attaches an adapter by building the tuner with ``peft.inject_adapter_in_model`` and then loading the saved
tensors itself, under the names it expects for LoRA-like methods (``<module>.<prefix><name>.<adapter>``). PUMA saves
canonical names (``puma.layers.3.mlp.down``, checkpoint_keys.py), so that loader matches none of them, only logs them
as unexpected, and leaves freshly initialised PUMA weights in the model. Its later calls (``set_adapter``,
``delete_adapter``, ...) also require PEFT >= 0.22, while PUMA is written against PEFT 0.21. Supporting that route would
mean re-implementing transformers' loader for PUMA; instead every entry point refuses with
:class:`TransformersIntegrationError`, which says what to call:

* ``load_adapter`` and ``from_pretrained(<adapter folder>)`` reach :class:`~.model.PUMAModel` through
  ``inject_adapter_in_model``, which hands the tuner a bare config (a ``PeftModel`` hands it ``{name: config}``);
  the tuner refuses before it touches the model.
* ``add_adapter`` stops at transformers' PEFT version check before any PEFT code runs, so
  :func:`install_transformers_guard` wraps it to refuse PUMA configs first (other configs go through unchanged).
"""

from __future__ import annotations

import functools
from typing import Any

from ...errors import IncompatibleCheckpointError, UnsupportedModelError
from .registration import PEFT_TYPE

_GUARD_MARK = "_peft_puma_guard"


class TransformersIntegrationError(UnsupportedModelError, IncompatibleCheckpointError):
    """A PUMA adapter was handed to transformers' own adapter API (or ``peft.inject_adapter_in_model``).

    Both an unsupported use of the model and a load that cannot happen, so it is caught as either.
    """


def refusal_message(config: Any = None) -> str:
    """Why transformers' adapter API cannot attach a PUMA adapter, and what to call instead."""
    base = getattr(config, "base_model_name_or_path", None)
    backbone = f"AutoModel.from_pretrained({base!r})" if base else "AutoModel.from_pretrained(<base model>)"
    return (
        "PUMA adapters cannot be loaded or added through transformers' PEFT integration (`model.load_adapter(path)`, "
        "`model.add_adapter(config)`, `AutoModel.from_pretrained(<adapter folder>)`) nor through "
        "`peft.inject_adapter_in_model`: that route cannot map PUMA's saved tensors (it would run with untrained "
        "PUMA weights) and PUMA's prompts and embedding head need PEFT's model wrapper. Instead, after "
        "`import peft_puma`, load a saved adapter with `peft.PeftModel.from_pretrained(model, path)` on the plain "
        f"backbone (`model = {backbone}`), or add a new one with `peft.get_peft_model(model, PUMAConfig(...))`."
    )


def is_puma_config(config: Any) -> bool:
    return getattr(config, "peft_type", None) == PEFT_TYPE


def install_transformers_guard() -> None:
    """Make ``PreTrainedModel.add_adapter`` refuse PUMA configs with advice (idempotent; others pass through)."""
    try:
        from transformers.integrations.peft import PeftAdapterMixin
    except ImportError:  # a transformers without its PEFT integration has nothing to guard
        return
    original = PeftAdapterMixin.__dict__.get("add_adapter")
    if original is None or getattr(original, _GUARD_MARK, False):
        return

    @functools.wraps(original)
    def add_adapter(self, *args: Any, **kwargs: Any):
        config = kwargs.get("adapter_config", args[0] if args else None)
        if is_puma_config(config):
            raise TransformersIntegrationError(refusal_message(config))
        return original(self, *args, **kwargs)

    setattr(add_adapter, _GUARD_MARK, True)
    PeftAdapterMixin.add_adapter = add_adapter
