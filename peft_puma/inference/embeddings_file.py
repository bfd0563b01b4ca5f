"""The embeddings file (safetensors) that ``python -m peft_puma.embed`` writes: ``embeddings`` (N x D, float32,
L2-normalised), ``labels`` for a dataset, and the row descriptions as JSON metadata (``paths`` for a folder,
``datasets`` and ``roles`` for a dataset, ``skipped`` files). Written whole or not at all; an existing file is replaced
only when it is an embeddings file itself (docs/safety.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ForeignContentError, InvalidInputError
from ..file_modes import apply_umask
from ..output_place import make_parent_folders
from ..owned_paths import write_failures_reported


# ------------------------------------------------------------------------------------------------ the output file
def check_output_path(path: str) -> None:
    """Raise ``InvalidInputError`` (one line) unless a file can be written at ``path`` (its missing parent folders
    are created on writing)."""
    if not path:
        raise InvalidInputError("The output path is empty; give a file such as embeddings.safetensors.")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        example = os.path.join(path, "embeddings.safetensors")
        raise InvalidInputError(f"The output {path!r} is a folder; give a file path, such as {example!r}.")
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InvalidInputError(f"Cannot write the output {path!r}: {existing!r} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"Cannot write the output {path!r}: the folder {existing!r} is not writable.")
    if os.path.exists(path) and not _is_embeddings_file(path):
        raise ForeignContentError(
            f"The output {path!r} exists and is not an embeddings file of peft_puma; nothing was written: choose "
            "another path (docs/safety.md)."
        )


def _is_embeddings_file(path: str) -> bool:
    """A safetensors file with an ``embeddings`` tensor: what :func:`save_embeddings` writes, so it may be replaced."""
    try:
        with safe_open(path, framework="pt") as handle:
            return "embeddings" in handle.keys()
    except Exception:  # not a safetensors file at all: safetensors raises its own error types
        return False


def save_embeddings(path: str, embeddings: torch.Tensor, labels: Any = None, **rows: Sequence[Any]) -> None:
    """Write ``embeddings`` (and integer ``labels``) with safetensors; ``rows`` (JSON-serialisable lists) go to the
    metadata. The file is written to a temporary name beside ``path`` and renamed: it is complete or absent."""
    check_output_path(path)
    tensors = {"embeddings": embeddings.float().contiguous()}
    if labels is not None:
        tensors["labels"] = torch.as_tensor(list(labels), dtype=torch.int64)
    make_parent_folders(path)  # the rule of every output (peft_puma/output_place.py)
    partial = f"{path}.partial-{os.getpid()}"

    def kept() -> str:
        return "the previous file there is unchanged" if os.path.exists(path) else "nothing was written"

    try:
        with write_failures_reported(f"Writing the embeddings file {path!r}", path, kept):
            save_file(tensors, partial, metadata={name: json.dumps(list(values)) for name, values in rows.items()})
            apply_umask(partial)
            os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def load_embeddings(path: str) -> dict[str, Any]:
    """``{"embeddings": tensor, "labels": tensor (if saved), <row field>: list, ...}`` of :func:`save_embeddings`."""
    with safe_open(path, framework="pt") as handle:
        result: dict[str, Any] = {key: handle.get_tensor(key) for key in handle.keys()}
        for name, text in (handle.metadata() or {}).items():
            result[name] = json.loads(text)
    return result
