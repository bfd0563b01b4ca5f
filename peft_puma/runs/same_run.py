"""Whether a saved run is the run one wants: one rule for resuming a checkpoint and for reusing a finished run.

Two runs are the same run when they agree on

- the recipe: every config key but the control keys (the output folder, logging, checkpoint cadence, data paths,
  workers, activation checkpointing: how a run is steered, not what it learns) and the per-process keys, which are
  compared multiplied by the number of processes: the global batch, ``per_device_batch_size x processes``; four
  processes of 45 train the run of one process of 180 (the loss sees the gathered global batch, docs/spec.md
  section 6);
- the data: images and classes per dataset, where both sides record them (the paths may differ between machines), and
  the data's identity (:mod:`.data_identity`: the split record's classes, the names and sizes of the source's files),
  where both sides record it;
- the backbone's weights: the fingerprint of its tensors (:mod:`peft_puma.backbones.fingerprint`), where both sides
  record it; the config names the backbone by a path or Hub id, which stays the same when the weights behind it
  change;
- for a finished run, its result keys: its length (``epochs``, ``max_steps``), part of what the run learnt, whereas a
  checkpoint may be resumed towards another end; and the split its results score (``eval_split``): a finished run
  scored on the test split does not stand for one scored on the validation split, whereas a checkpoint has no results
  yet.

Which key plays which part is declared on the key itself (:mod:`peft_puma.config.keys`) and arrives here as
:class:`~peft_puma.config.keys.KeyRoles` (``TrainingConfig.key_roles()``), as is a key compared by what it means rather
than as written (``mixed_precision``: the precision that applies; a run records what applied). A key that a saved
config lacks because it predates the key counts with the value every run had before the key existed (the key's
``before``), so older checkpoints and finished runs stay usable.

The trainer's ``resume`` (``peft_puma.training.loop``) calls :func:`run_differences` and words its own refusal; the
benchmark scripts that reuse finished runs (``benchmarks/accuracy.py``, ``benchmarks/diagnosis.py``) call
:func:`finished_run_mismatch`, which words the differences for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config.keys import KeyRoles

if TYPE_CHECKING:
    from .run_file import RunRecord

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
    data_identity: Mapping[str, str | None] | None = None  # :mod:`.data_identity`: its classes and files


@dataclass(frozen=True)
class Difference:
    """One key in which the saved run differs from the wanted one (a nested entry is named ``section.key``)."""

    key: str
    saved: Any
    wanted: Any


def run_differences(saved: RunIdentity, wanted: RunIdentity, roles: KeyRoles, *, finished: bool) -> list[Difference]:
    """The differences that make ``saved`` another run than ``wanted`` (none: the same run), by the keys' ``roles``;
    ``finished``: ``saved`` is a finished run, whose result keys count. A key only one side records is a difference,
    unless its role gives the value it had ``before`` it existed."""
    ignored = roles.control | roles.per_process | (frozenset() if finished else roles.result)
    old = _compared(roles, {**_as_json(roles.before), **_as_json(saved.config)})
    new = _compared(roles, {**_as_json(roles.before), **_as_json(wanted.config)})
    differences = [
        difference
        for key in sorted(set(old) | set(new))
        if key not in ignored and old.get(key) != new.get(key)
        for difference in _flat(key, old.get(key), new.get(key))
    ]
    for name in sorted(roles.per_process):
        old_total = (old.get(name) or 0) * saved.num_processes
        new_total = (new.get(name) or 0) * wanted.num_processes
        if old_total != new_total:
            differences.append(Difference(f"global batch ({name} x processes)", old_total, new_total))
    if saved.data_sizes is not None and wanted.data_sizes is not None:
        old_sizes, new_sizes = _as_json(saved.data_sizes), _as_json(wanted.data_sizes)
        if old_sizes != new_sizes:
            differences += _flat("data_sizes", old_sizes, new_sizes)
    for part, old_hash in (saved.data_identity or {}).items():
        new_hash = (wanted.data_identity or {}).get(part)
        if old_hash and new_hash and old_hash != new_hash:
            differences.append(Difference(part, old_hash, new_hash))
    if saved.backbone_fingerprint and wanted.backbone_fingerprint:
        if saved.backbone_fingerprint != wanted.backbone_fingerprint:
            differences.append(Difference(BACKBONE_WEIGHTS, saved.backbone_fingerprint, wanted.backbone_fingerprint))
    return differences


def finished_run_mismatch(saved: RunRecord, wanted: RunIdentity, roles: KeyRoles) -> str:
    """How the finished run whose run file is ``saved`` differs from ``wanted``, in one line (``key: value there,
    value here; ...``); empty when it is the same run."""
    differences = run_differences(
        RunIdentity(saved.config, saved.num_processes, saved.data_sizes, saved.backbone_fingerprint),
        wanted,
        roles,
        finished=True,
    )
    return "; ".join(f"{d.key}: {d.saved!r} there, {d.wanted!r} here" for d in differences)


def _compared(roles: KeyRoles, values: dict[str, Any]) -> dict[str, Any]:
    """The config as compared: a key with a ``compare`` rule is compared as what it means here (``mixed_precision``:
    the precision that applies, so a run that recorded ``bf16`` and one that lets accelerate choose bf16 agree, and an
    older run's ``auto`` counts as what auto gives on this machine)."""
    return {key: roles.compare[key](value) if key in roles.compare else value for key, value in values.items()}


def _as_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping as JSON stores it (tuples become lists), so that a live config compares equal to its file."""
    return json.loads(json.dumps(dict(values)))


def _flat(key: str, old: Any, new: Any) -> list[Difference]:
    """Mappings (``puma``, ``loss_options``, the data sizes) entry by entry, so that a refusal names what differs."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [Difference(key, old, new)]
    entries = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return [Difference(f"{key}.{entry}", old.get(entry), new.get(entry)) for entry in entries]
