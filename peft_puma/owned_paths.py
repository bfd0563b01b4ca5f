"""What peft_puma may delete or overwrite: only files and folders it wrote itself (docs/safety.md).

Every command that writes a folder (a UML-mini build, a training run, a converted or pretrained backbone, a benchmark's
run folders) describes it with an :class:`OwnedLayout`: the names it writes there and the files whose presence proves
that peft_puma wrote the folder. Before writing into an existing folder, or removing one, the command checks it
against its layout: a folder holding anything else is refused with :class:`~peft_puma.errors.ForeignContentError` and
left untouched. New folders are built beside their destination in a staging folder and moved into place, so an
interrupted build never deletes the complete one it was to replace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import ForeignContentError, WriteFailedError
from .output_place import check_output_place, make_parent_folders

STAGING_MARKER = ".peft_puma_staging"  # written first into every staging folder: proves peft_puma made it
_SHOWN = 5  # foreign names listed in an error


@dataclass(frozen=True)
class OwnedLayout:
    """The entries a peft_puma command writes directly inside its output folder.

    ``signature``: entries whose presence shows that the folder was written by that command (a manifest, a run file).
    ``entries``: every name the command may write there; anything else in the folder belongs to someone else.
    """

    what: str
    signature: frozenset[str]
    entries: frozenset[str]

    @classmethod
    def of(cls, what: str, signature: Iterable[str], others: Iterable[str] = ()) -> OwnedLayout:
        signature = frozenset(signature)
        return cls(what, signature, signature | frozenset(others))

    def is_owned(self, folder: str) -> bool:
        """``True`` when ``folder`` holds this command's output and nothing else, ``False`` when it does not exist
        or is empty; :class:`ForeignContentError` (naming what is foreign) in every other case."""
        if not os.path.lexists(folder):
            return False
        if not os.path.isdir(folder):
            raise ForeignContentError(f"{folder} is a file, not a folder: give a folder for {self.what}.")
        names = set(os.listdir(folder))
        if not names:
            return False
        if not names & self.signature:
            raise ForeignContentError(
                f"{folder} is not empty and does not hold {self.what} (no {' or '.join(sorted(self.signature))}); "
                "peft_puma writes only into a new or empty folder or one it wrote itself. Nothing was touched: "
                "choose another folder."
            )
        foreign = sorted(names - self.entries)
        if foreign:
            raise ForeignContentError(
                f"{folder} holds {self.what} and also files peft_puma did not write ({', '.join(foreign[:_SHOWN])}"
                f"{', ...' if len(foreign) > _SHOWN else ''}). Nothing was touched: move them out or choose "
                "another folder."
            )
        return True

    def clear(self, folder: str, keep: Iterable[str] = ()) -> list[str]:
        """Remove from ``folder`` everything this command wrote there but ``keep`` (the folder itself stays), if it
        holds only this command's output (else :class:`ForeignContentError`, nothing touched); returns the names
        removed, sorted."""
        if not self.is_owned(folder):
            return []
        removed = sorted(set(os.listdir(folder)) - set(keep))
        for name in removed:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        return removed

    def remove(self, folder: str) -> None:
        """Delete ``folder`` if it holds only this command's output (nothing when it does not exist)."""
        if self.is_owned(folder):
            shutil.rmtree(folder)
        elif os.path.isdir(folder):
            os.rmdir(folder)  # empty


@contextlib.contextmanager
def write_failures_reported(
    what: str, path: str, kept: Callable[[], str], cleanup: Callable[[], object] | None = None
) -> Iterator[None]:
    """Turn a write that fails inside the block (:func:`is_write_failure`) into one
    :class:`~peft_puma.errors.WriteFailedError`: ``<what> failed (<reason>; <N> MB free there); <kept()>``, after
    ``cleanup``. Every other error passes through unchanged."""
    try:
        yield
    except Exception as error:
        if not is_write_failure(error):
            raise
        if cleanup is not None:
            cleanup()
        raise WriteFailedError(f"{what} failed ({describe_write_failure(error, path)}); {kept()}") from None


def is_write_failure(error: BaseException) -> bool:
    """Whether ``error`` is a file that could not be written (a full disk, no permission, a read-only file system),
    however the writer reports it: an ``OSError``, torch's zip writer's ``RuntimeError``, safetensors' own error."""
    if isinstance(error, OSError):
        return True
    text = str(error).lower()
    if isinstance(error, RuntimeError):  # torch's zip writer
        return "write" in text or "inline_container" in text
    return type(error).__name__ == "SafetensorError" and any(
        words in text for words in ("i/o error", "ioerror", "os error", "no space", "permission", "read-only")
    )


def describe_write_failure(error: BaseException, path: str) -> str:
    """Why a write into ``path`` failed, in words: the reason, and the free space where it was written."""
    reason = getattr(error, "strerror", None) or " ".join(str(error).split())[:200]
    existing = path
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        free = shutil.disk_usage(existing or ".").free
    except OSError:
        return reason
    return f"{reason}; {free / 1e6:.1f} MB free there"


def check_json_output(path: str, key: str, what: str) -> None:
    """A JSON file may be written at ``path`` when nothing is there or when it is ``what`` of peft_puma (a JSON
    object with ``key``); a folder, someone else's file or a place where no file can be made is refused before any
    work. Missing parent folders are not a refusal: they are made on writing, the rule of every output
    (:mod:`peft_puma.output_place`)."""
    if os.path.isdir(path):
        raise ForeignContentError(f"{path} is a folder; give the path of a .json file for {what}.")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                ours = key in json.load(handle)
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise ForeignContentError(
                f"{path} exists and is not {what} written by peft_puma; nothing was written: choose another path."
            )
    check_output_place(path, f"The file for {what}")


def write_json_atomically(path: str, value: object, default: Callable[[Any], Any] | None = None) -> None:
    """Write through a uniquely named temporary file beside ``path``: a crash leaves the old file or the new one."""

    def write(partial: str) -> None:
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=1, default=default)
            handle.write("\n")

    write_file_atomically(path, write)


def write_file_atomically(path: str, write: Callable[[str], None]) -> None:
    """``write(partial)`` a uniquely named temporary file beside ``path``, then rename it to ``path`` (missing parent
    folders are made first, the rule of every output).

    The file gets the permissions a plainly created file would get (``mkstemp`` makes it private), so atomic writing
    does not hide results from the user's group.
    """
    make_parent_folders(path)
    descriptor, partial = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(os.path.abspath(path))
    )
    os.close(descriptor)
    try:
        write(partial)
        os.chmod(partial, 0o666 & ~_umask())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_staging_folder(final: str) -> str:
    """A new, uniquely named, hidden folder beside ``final`` to build its replacement in (same file system, so the
    move into place is a rename). Stale staging folders of earlier interrupted builds of ``final`` are removed."""
    parent, name = os.path.split(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(final)
    staging = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the finished folder should not be
    open(os.path.join(staging, STAGING_MARKER), "w").close()
    return staging


def remove_stale_staging(final: str) -> list[str]:
    """Remove the staging folders of ``final`` left by a crash: only folders of that name pattern that carry the
    marker peft_puma writes into them first. Returns their paths."""
    parent, name = os.path.split(os.path.abspath(final))
    removed = []
    if not os.path.isdir(parent):
        return removed
    for entry in os.listdir(parent):
        path = os.path.join(parent, entry)
        if entry.startswith(f".{name}.partial-") and os.path.isfile(os.path.join(path, STAGING_MARKER)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def discard_staging(staging: str) -> None:
    """Remove a staging folder this process made (after a failed build)."""
    if os.path.isfile(os.path.join(staging, STAGING_MARKER)):
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staging: str, final: str, layout: OwnedLayout) -> None:
    """Replace ``final`` by the finished ``staging`` folder; a previous ``final`` must be ``layout``'s own output.

    The previous folder is renamed aside before the new one moves in and deleted only afterwards: a crash at any
    point leaves a complete folder under ``final`` or under the aside name, never nothing.
    """
    os.remove(os.path.join(staging, STAGING_MARKER))
    if layout.is_owned(final):
        aside = os.path.join(
            os.path.dirname(os.path.abspath(final)), f".{os.path.basename(final)}.old-{uuid.uuid4().hex[:8]}"
        )
        os.replace(final, aside)
        os.replace(staging, final)
        shutil.rmtree(aside, ignore_errors=True)
        return
    if os.path.isdir(final):
        os.rmdir(final)  # empty: os.replace cannot move a folder onto a non-empty one, nor onto an empty one portably
    os.replace(staging, final)
