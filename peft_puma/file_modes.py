"""Files peft_puma writes get the permissions the user's umask gives, as any file they write themselves.

Why: safetensors (0.8) writes through a private temporary file, so an adapter, an embeddings file or LoRA's tensors
came out readable by their owner only (0600), while the JSON beside them was readable by the group: an adapter shared
on a cluster's project folder could not be loaded by the colleagues it was meant for.
"""

from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give the file ``path`` the mode a newly created file gets (``0o666`` less the umask)."""
    os.chmod(path, 0o666 & ~_umask())
