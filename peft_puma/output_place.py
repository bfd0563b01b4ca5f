"""Where an output file may go: one rule for every file an evaluation writes (a grid, the test-read ledger), the
rule ``embed --output`` follows too (docs/safety.md, "Output paths").

Missing parent folders are created on writing; a regular file where a folder of the path should be, or a folder in
which not even a temporary file can be made (no permission, a read-only or virtual file system such as ``/proc``), is
refused at start-up in one line, before any model loads, so that no work is lost at the end.
"""

from __future__ import annotations

import os
import tempfile

from .errors import WriteFailedError


def nearest_existing(path: str) -> str:
    """The deepest folder or file of ``path``'s parents that exists (``/`` at worst)."""
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    return existing


def check_output_place(path: str, what: str) -> None:
    """Raise :class:`~peft_puma.errors.WriteFailedError` (one line naming ``what`` and ``path``) unless a file can
    be written at ``path``: the nearest existing parent is a folder in which a file can be created."""
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        raise WriteFailedError(
            f"{what} {path!r} cannot be written: {existing} is a regular file, not a folder; choose another path."
        )
    try:  # os.access says yes to root on a read-only or virtual file system: only creating a file tells
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".peft_puma_probe."):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise WriteFailedError(
            f"{what} {path!r} cannot be written: no file can be made in the folder {existing} ({reason}); choose "
            "another path."
        ) from None


def make_parent_folders(path: str) -> None:
    """Create the missing parent folders of ``path`` (the rule of every output: they are made, not refused)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
