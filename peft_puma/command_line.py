"""The error boundary every command runs inside (``train``, ``evaluate``, ``embed``, ``search``, the UML-mini builder,
the stand-in's pretraining, the timm converter): a user's or the machine's mistake ends as one line on stderr and an
exit status, never as a traceback (docs/training.md, "Exit status").

- a :class:`~peft_puma.errors.PUMAError` (a mistake in the config, the data, a path): ``error: <message>``, its
  ``exit_status`` (2; 3 for a loss that became NaN or infinite);
- a full disk, a folder without write permission or on a read-only file system: ``error: cannot write <path>: ...``,
  exit 2;
- Ctrl-C: ``interrupted``, with what the command kept (a training run: what it saved and how to continue, its
  checkpoints being written whole or not at all, so ``--resume`` continues from the last one; ``embed`` and ``search``:
  that their earlier outputs are intact), exit 130.

Anything else is a bug of peft_puma and keeps its traceback. ``PEFT_PUMA_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from .errors import InterruptedRunError, PUMAError

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
DEBUG_VARIABLE = "PEFT_PUMA_DEBUG"

# OS errors that are the machine's state or the user's choice of path, not a bug: they get one line.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def run_command(body: Callable[[], int | None], interrupted: str | Callable[[], str] | None = None) -> int:
    """Run a command's ``body`` and turn the errors a user can cause into one line and an exit status;
    ``interrupted``: what a Ctrl-C leaves as it was, said after ``interrupted:`` (a function: asked then, so that it
    can name what the command was given)."""
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        return body() or EXIT_OK
    except PUMAError as error:
        if debug:
            raise
        prefix = "interrupted" if isinstance(error, InterruptedRunError) else "error"
        print(f"{prefix}: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        if debug:
            raise
        said = interrupted() if callable(interrupted) else interrupted
        print(f"interrupted: {said}" if said else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        if debug or error.errno not in _ENVIRONMENT_ERRNOS:
            raise
        print(f"error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_INVALID


def describe_os_error(error: OSError) -> str:
    """``cannot write /path: No space left on device (...)`` (the path, when the error names one)."""
    where = f" {error.filename}" if error.filename else ""
    reason = error.strerror or str(error)
    verb = "cannot write" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "cannot access"
    hint = {
        errno.ENOSPC: " (free some space, or write elsewhere)",
        errno.EDQUOT: " (disk quota exceeded: free some space, or write elsewhere)",
        errno.EROFS: " (a read-only file system: choose a writable folder)",
    }.get(error.errno, " (check the folder's permissions, or choose another one)")
    return f"{verb}{where}: {reason}{hint}"
