"""Crash-safe checkpoints of the trainable state, and finding the one to resume from (docs/training.md, "Checkpoints").

A checkpoint is ``<output_dir>/checkpoints/checkpoint-<step>``. It is written as ``.checkpoint-<step>.tmp`` by
``accelerator.save_state`` (every process: RNG states are per process), completed by the main process with the
trainer position (``trainer_state.json``) and, last, the marker file; every file and the folder are fsynced and the
folder is renamed into place with ``os.replace``. A crash or a kill at any moment therefore leaves either a complete
``checkpoint-<step>`` or a ``.tmp`` folder that is never loaded (and is removed at the next start). Resuming takes the
newest folder that has the marker.

Only the trainable state is saved: ``save_state`` would write the frozen backbone too, so a save hook replaces the
model's state dict by the trainable tensors and the loss's buffers (CurricularFace's ``t``), and a load hook restores
exactly those, refusing a checkpoint whose tensors do not match.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import ForeignContentError, IncompatibleCheckpointError
from ..owned_paths import write_failures_reported
from .layout import CHECKPOINTS

MARKER = "checkpoint_complete.json"
TRAINER_STATE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_STAGING_NAME = re.compile(r"^\.checkpoint-(\d+)\.tmp$")
_MODEL_FILE = "model.safetensors"


class CorruptCheckpointError(IncompatibleCheckpointError):
    """A complete checkpoint whose files cannot be read (truncated or damaged on disk)."""


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint keeps: trainable parameters and the buffers of the loss (``loss.`` prefix)."""
    state = {name: p for name, p in module.named_parameters() if p.requires_grad}
    state.update({name: b for name, b in module.named_buffers() if name.startswith("loss.")})
    return {name: t.detach().cpu().clone().contiguous() for name, t in state.items()}


def register_trainable_state_hooks(accelerator: Any, module: nn.Module) -> None:
    """Make ``save_state`` / ``load_state`` write and read only :func:`trainable_state` of ``module``."""
    unwrapped = accelerator.unwrap_model(module)

    def save_hook(models: list[nn.Module], weights: list[dict[str, torch.Tensor]], output_dir: str) -> None:
        for index, model in enumerate(models):
            if accelerator.unwrap_model(model) is unwrapped and index < len(weights):
                weights[index] = trainable_state(unwrapped)

    def load_hook(models: list[nn.Module], input_dir: str) -> None:
        others = [model for model in models if accelerator.unwrap_model(model) is not unwrapped]
        if len(others) < len(models):
            models[:] = others  # accelerate would load it strictly, expecting the frozen backbone too
            load_trainable_state(unwrapped, os.path.join(input_dir, _MODEL_FILE))

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def load_trainable_state(module: nn.Module, path: str) -> None:
    expected = trainable_state(module)
    if not os.path.isfile(path):
        raise CorruptCheckpointError(f"The checkpoint has no {os.path.basename(path)} ({path}): it was damaged.")
    try:
        saved = load_file(path)
    except Exception as error:  # safetensors raises its own SafetensorError for truncated or damaged files
        raise CorruptCheckpointError(f"The checkpoint file {path} cannot be read ({error}).") from None
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    wrong = [k for k in set(expected) & set(saved) if saved[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise IncompatibleCheckpointError(
            f"The checkpoint {os.path.dirname(path)} does not fit this run's model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {sorted(wrong)[:5]} (another method, backbone or loss?)."
        )
    result = module.load_state_dict(saved, strict=False)
    if result.unexpected_keys:
        raise IncompatibleCheckpointError(f"Unexpected checkpoint tensors {result.unexpected_keys[:5]}.")


def checkpoint_dir(output_dir: str, step: int) -> str:
    return os.path.join(output_dir, CHECKPOINTS, f"checkpoint-{step}")


def save_checkpoint(accelerator: Any, output_dir: str, step: int, trainer_state: dict[str, Any], limit: int) -> str:
    """Write the complete checkpoint of ``step`` atomically (see the module docstring); keep the newest ``limit``.

    Must be called by every process.
    """
    final = checkpoint_dir(output_dir, step)
    staging = os.path.join(output_dir, CHECKPOINTS, f".checkpoint-{step}.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    with write_failures_reported(
        f"Writing the checkpoint of step {step} in {os.path.dirname(staging)}",
        staging,
        kept=lambda: (
            f"{_kept(output_dir)} Free some space (or fix the folder's permissions) and continue with --resume."
        ),
        cleanup=lambda: shutil.rmtree(staging, ignore_errors=True),
    ):
        accelerator.save_state(staging)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _write_json(os.path.join(staging, TRAINER_STATE), trainer_state)
            files = sorted(os.listdir(staging))
            for name in files:
                _fsync_file(os.path.join(staging, name))
            # The marker lists every file, so that a checkpoint missing one later is known to be damaged.
            _write_json(os.path.join(staging, MARKER), {"step": step, "files": files})
            _fsync_dir(staging)
    if accelerator.is_main_process:
        if os.path.isdir(final):  # the same step saved before (a resumed run ending where it started)
            if not os.path.isfile(os.path.join(final, MARKER)):
                raise ForeignContentError(f"{final} exists but is no checkpoint peft_puma wrote; move it away.")
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_dir(os.path.dirname(final))
        prune_checkpoints(output_dir, limit)
    accelerator.wait_for_everyone()
    return final


def complete_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """``(step, path)`` of every complete checkpoint, oldest first."""
    root = os.path.join(output_dir, CHECKPOINTS)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _NAME.match(name)
        path = os.path.join(root, name)
        if match and os.path.isfile(os.path.join(path, MARKER)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def load_checkpoint(accelerator: Any, path: str) -> None:
    """``accelerator.load_state(path)``; a file that cannot be read raises :class:`CorruptCheckpointError`.

    Every file is read before anything is restored, so a corrupt checkpoint changes no weight or state.
    """
    missing = [name for name in _listed_files(path) if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise CorruptCheckpointError(f"The checkpoint {path} lacks {', '.join(missing)}: it was damaged after writing.")
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        try:
            if name.endswith(".safetensors"):
                load_file(file)
            elif name.endswith((".bin", ".pkl", ".pt")):
                torch.load(file, map_location="cpu", weights_only=False)
        except Exception as error:  # truncated pickles and safetensors fail with many exception types
            raise CorruptCheckpointError(
                f"The checkpoint file {file} cannot be read ({type(error).__name__}: {error})."
            ) from None
    accelerator.load_state(path)


def latest_checkpoint(output_dir: str) -> str | None:
    found = complete_checkpoints(output_dir)
    return found[-1][1] if found else None


def prune_checkpoints(output_dir: str, limit: int) -> None:
    for _, path in complete_checkpoints(output_dir)[:-limit]:
        shutil.rmtree(path, ignore_errors=True)


def remove_partial_checkpoints(output_dir: str) -> list[str]:
    """Delete staging folders left by a crash during a save; returns their names."""
    root = os.path.join(output_dir, CHECKPOINTS)
    if not os.path.isdir(root):
        return []
    partial = [
        name for name in os.listdir(root) if _STAGING_NAME.match(name) and os.path.isdir(os.path.join(root, name))
    ]
    for name in partial:
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return partial


def read_trainer_state(checkpoint: str) -> dict[str, Any]:
    if not os.path.isdir(checkpoint):
        raise IncompatibleCheckpointError(
            f"{checkpoint} does not exist or is not a folder; --resume takes true (the newest complete checkpoint of "
            "output_dir) or the path of a checkpoint folder (output_dir/checkpoints/checkpoint-<step>)."
        )
    if not os.path.isfile(os.path.join(checkpoint, MARKER)):
        raise IncompatibleCheckpointError(
            f"{checkpoint} is not a complete checkpoint (no {MARKER}): it was interrupted while being written."
        )
    try:
        with open(os.path.join(checkpoint, TRAINER_STATE), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise CorruptCheckpointError(
            f"The checkpoint's {TRAINER_STATE} in {checkpoint} cannot be read ({error})."
        ) from None


def _listed_files(path: str) -> list[str]:
    """The files a checkpoint's marker lists (checkpoints written before the list: the model and trainer state)."""
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as handle:
            listed = json.load(handle).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    return listed if isinstance(listed, list) else [_MODEL_FILE, TRAINER_STATE]


def _kept(output_dir: str) -> str:
    found = complete_checkpoints(output_dir)
    if not found:
        return "no earlier checkpoint was complete."
    step, path = found[-1]
    return f"the newest complete checkpoint, {path} (step {step}), is intact."


def _write_json(path: str, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_file(path: str) -> None:
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _fsync_dir(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def foreign_entries(output_dir: str) -> list[str]:
    """Paths under ``output_dir/checkpoints`` that the trainer did not write: anything but ``checkpoint-<step>``
    folders holding only the files their marker lists (and the marker), and the trainer's own staging folders.
    ``--overwrite_output_dir`` refuses a run folder with any, so that it never deletes a user's file."""
    root = os.path.join(output_dir, CHECKPOINTS)
    if not os.path.isdir(root):
        return []
    foreign = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if _STAGING_NAME.match(name) and os.path.isdir(path):
            continue
        if not (_NAME.match(name) and os.path.isfile(os.path.join(path, MARKER))):
            foreign.append(os.path.join(CHECKPOINTS, name))
            continue
        expected = {MARKER, *_listed_files(path)}
        foreign += [os.path.join(CHECKPOINTS, name, entry) for entry in sorted(set(os.listdir(path)) - expected)]
    return foreign
