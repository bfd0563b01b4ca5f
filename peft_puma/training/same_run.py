"""Whether a saved run is the run one wants: one rule for resuming a checkpoint and for reusing a finished run.

Two runs are the same run when they agree on

- the recipe: every config key except :data:`~peft_puma.training.arguments.RUN_CONTROL_KEYS` (the output folder,
  logging, checkpoint cadence, data paths, workers, activation checkpointing: how a run is steered, not what it
  learns) and ``per_device_batch_size``, which is compared as
- the global batch, ``per_device_batch_size x processes``: four processes of 45 train the run of one process of 180
  (the loss sees the gathered global batch, docs/spec.md section 6);
- the data: images and classes per dataset, where both sides record them (the paths may differ between machines);
- the backbone's weights: the fingerprint of its tensors (:mod:`peft_puma.backbones.fingerprint`), where both sides
  record it; the config names the backbone by a path or Hub id, which stays the same when the weights behind it
  change;
- for a finished run, its length (``epochs``, ``max_steps``): it is part of what the run learnt, whereas a checkpoint
  may be resumed towards another end; and the split its results score (``eval_split``): a finished run scored on the
  test split does not stand for one scored on the validation split, whereas a checkpoint has no results yet.

A key that a saved config lacks because it predates the key counts with the value every run had before the key existed
(:data:`KEYS_ADDED_LATER`), so older checkpoints and finished runs stay usable.

The trainer's ``resume`` (``peft_puma.training.loop``) calls :func:`run_differences` and words its own refusal; the
benchmark scripts that reuse finished runs (``benchmarks/accuracy.py``, ``benchmarks/diagnosis.py``) call
:func:`finished_run_mismatch`, which words the differences for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..data.schema import TEST_SPLIT
from ..data.transforms import TRAIN_CROP_SCALE, TRAIN_HFLIP_PROBABILITY
from .arguments import RUN_CONTROL_KEYS

if TYPE_CHECKING:
    from ..inference.run_file import RunRecord

FINISHED_RUN_KEYS: frozenset[str] = frozenset({"epochs", "max_steps", "eval_split"})
"""Run-control keys that still count for a finished run: its length and the split its results score."""

KEYS_ADDED_LATER: dict[str, Any] = {
    "crop_scale": list(TRAIN_CROP_SCALE),
    "hflip_probability": TRAIN_HFLIP_PROBABILITY,
    "eval_split": TEST_SPLIT,
}
"""Keys added after runs were saved without them, with the value those runs had (the published recipe, the test
split)."""

GLOBAL_BATCH = "global batch (per_device_batch_size x processes)"
BACKBONE_WEIGHTS = "backbone weights (fingerprint of the tensors)"


@dataclass(frozen=True)
class RunIdentity:
    """What decides whether two runs are one: the flat config (``TrainingConfig.to_dict()``, or its JSON as a run
    file or checkpoint stores it), the number of processes and, where recorded, the data sizes per dataset and the
    backbone's weight fingerprint (runs saved before it was recorded have none)."""

    config: Mapping[str, Any]
    num_processes: int = 1
    data_sizes: Mapping[str, Mapping[str, int]] | None = None
    backbone_fingerprint: str | None = None


@dataclass(frozen=True)
class Difference:
    """One key in which the saved run differs from the wanted one (a nested entry is named ``section.key``)."""

    key: str
    saved: Any
    wanted: Any


def run_differences(saved: RunIdentity, wanted: RunIdentity, *, finished: bool) -> list[Difference]:
    """The differences that make ``saved`` another run than ``wanted`` (none: the same run); ``finished``: ``saved``
    is a finished run, whose length and scored split count. A key only one side records is a difference, unless it is
    one of :data:`KEYS_ADDED_LATER`."""
    ignored = (RUN_CONTROL_KEYS - FINISHED_RUN_KEYS if finished else RUN_CONTROL_KEYS) | {"per_device_batch_size"}
    old = {**KEYS_ADDED_LATER, **_as_json(saved.config)}
    new = {**KEYS_ADDED_LATER, **_as_json(wanted.config)}
    differences = [
        difference
        for key in sorted(set(old) | set(new))
        if key not in ignored and old.get(key) != new.get(key)
        for difference in _flat(key, old.get(key), new.get(key))
    ]
    old_batch = (old.get("per_device_batch_size") or 0) * saved.num_processes
    new_batch = (new.get("per_device_batch_size") or 0) * wanted.num_processes
    if old_batch != new_batch:
        differences.append(Difference(GLOBAL_BATCH, old_batch, new_batch))
    if saved.data_sizes is not None and wanted.data_sizes is not None:
        old_sizes, new_sizes = _as_json(saved.data_sizes), _as_json(wanted.data_sizes)
        if old_sizes != new_sizes:
            differences += _flat("data_sizes", old_sizes, new_sizes)
    if saved.backbone_fingerprint and wanted.backbone_fingerprint:
        if saved.backbone_fingerprint != wanted.backbone_fingerprint:
            differences.append(Difference(BACKBONE_WEIGHTS, saved.backbone_fingerprint, wanted.backbone_fingerprint))
    return differences


def finished_run_mismatch(saved: RunRecord, wanted: RunIdentity) -> str:
    """How the finished run whose run file is ``saved`` differs from ``wanted``, in one line (``key: value there,
    value here; ...``); empty when it is the same run."""
    differences = run_differences(
        RunIdentity(saved.config, saved.num_processes, saved.data_sizes, saved.backbone_fingerprint),
        wanted,
        finished=True,
    )
    return "; ".join(f"{d.key}: {d.saved!r} there, {d.wanted!r} here" for d in differences)


def _as_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping as JSON stores it (tuples become lists), so that a live config compares equal to its file."""
    return json.loads(json.dumps(dict(values)))


def _flat(key: str, old: Any, new: Any) -> list[Difference]:
    """Mappings (``puma``, ``loss_options``, the data sizes) entry by entry, so that a refusal names what differs."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [Difference(key, old, new)]
    entries = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return [Difference(f"{key}.{entry}", old.get(entry), new.get(entry)) for entry in entries]
