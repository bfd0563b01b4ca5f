"""One writer per output folder: an exclusive lock held for as long as a command writes there (docs/safety.md).

Two trainings started into one ``output_dir`` would otherwise both run to the end, interleave ``train_log.jsonl`` and
leave the second one's adapter over the first's. The lock is an ``flock`` on a small file in the folder, so the
operating system releases it when its process ends, however it ends (a crash, ``kill -9``): a lock is never left
behind by a dead process. The file records who holds it (process id, host, command, since when), so the refusal can
name the other process; a record left by a process that ended without releasing the lock (killed) is noticed and
reported when the next command takes the folder over.

POSIX only (``fcntl``); where it is missing (Windows) folders are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import IO, Any

from ..errors import FolderInUseError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class FolderLock:
    """An exclusive, non-blocking lock on ``path`` (a lock file), taken by :meth:`acquire` and released by
    :meth:`release`; a context manager too. ``what`` names the folder's user in messages (``a training run``);
    ``folder`` is the folder the lock guards, named in messages: the lock file's own folder unless the lock file
    lies beside the folder it guards (an index folder, replaced whole when its build ends)."""

    def __init__(self, path: str, what: str, *, remove_on_release: bool = False, folder: str | None = None) -> None:
        self.path = path
        self.folder = folder if folder is not None else (os.path.dirname(path) or ".")
        self.what = what
        self.remove_on_release = remove_on_release
        self.taken_over: dict[str, Any] | None = None  # the record of a holder that ended without releasing
        self._handle: IO[str] | None = None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderInUseError` naming the process that holds it."""
        if fcntl is None:
            return self
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for as long as the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(handle)
            handle.close()
            raise FolderInUseError(
                f"{self.folder} is in use by {self.what} ({_describe(holder)}); wait until it "
                "ends, or choose another output folder."
            ) from None
        self.taken_over = _read(handle) or None  # a clean release leaves the file empty
        handle.seek(0)
        handle.truncate()
        json.dump(_me(), handle)
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Empty the record (a clean release) and let go of the lock. The file stays, so that no second process can
        lock a fresh file while a third still holds the old one; ``remove_on_release`` removes it instead (a lock file
        beside a user's folder, where a leftover would be clutter), accepting that rare race."""
        if self._handle is None:
            return
        try:
            if self.remove_on_release:
                os.remove(self.path)
            else:
                self._handle.seek(0)
                self._handle.truncate()
                self._handle.flush()
        except OSError:
            pass  # a full disk cannot keep the lock from being released: the process's end releases the flock
        finally:
            self._handle.close()
            self._handle = None

    def stale_note(self) -> str | None:
        """One line about a previous holder that ended without releasing the lock, or ``None``."""
        if not self.taken_over:
            return None
        return (
            f"note: {self.folder} was last locked by {_describe(self.taken_over)}, which ended "
            "without releasing it (killed or crashed); this command has taken it over."
        )

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_across_processes(
    path: str,
    what: str,
    accelerator: Any = None,
    say: Any = print,
    *,
    remove_on_release: bool = False,
    folder: str | None = None,
) -> FolderLock:
    """The lock of ``path`` taken by the main process of a (possibly multi-process) command: every process raises
    :class:`FolderInUseError` together when another command holds it; a stale record is reported with ``say``."""
    lock = FolderLock(path, what, remove_on_release=remove_on_release, folder=folder)
    refusal = ""
    if accelerator is None or accelerator.is_main_process:
        try:
            lock.acquire()
        except FolderInUseError as error:
            refusal = str(error)
        note = lock.stale_note()
        if note:
            say(note)
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list  # only under several processes

        refusal = broadcast_object_list([refusal])[0]
    if refusal:
        raise FolderInUseError(refusal)
    return lock


def _me() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv)[:200],
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _read(handle: IO[str]) -> dict[str, Any]:
    handle.seek(0)
    text = handle.read().strip()
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        return {"unreadable": text[:80]}
    return record if isinstance(record, dict) else {}


def _describe(record: dict[str, Any]) -> str:
    if not record:
        return "another process"
    if "pid" not in record:
        return "another process (its lock record is unreadable)"
    command = f", {record['command']!r}" if record.get("command") else ""
    return f"process {record['pid']} on {record.get('host', '?')} since {record.get('since', '?')}{command}"
