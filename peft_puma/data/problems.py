"""Everything reading a collection found wrong, gathered over one pass and said in one message (docs/collections.md,
"Problems").

A user's folder rarely has a single flaw; learning them one failed run at a time costs a run each. The readers
(:mod:`.folder_tree`, :mod:`.columns`) and the split (:mod:`.unified`) add what they find here instead of raising at
the first: **notes** are what was left out or read by a convention (files that are not images, an empty class
folder, images in a subfolder of their class folder, single-image classes); **problems** stop the run (a domain
without queries); **unreadable** files stop it unless the user chose ``on_error: skip``. :meth:`Findings.settle`
then raises one error listing every problem with the notes, or prints the notes as one warning.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from ..errors import DatasetLayoutError, InvalidInputError
from .images import BadImage

SHOWN = 3  # examples named per kind of problem (the rest are counted)
SKIP_HINT = "--on_error skip"


def is_main_process() -> bool:
    """Whether this is the process that speaks for the run: the only one, or rank 0 under ``accelerate launch``
    (every process reads the source alike; one says what it found)."""
    return int(os.environ.get("RANK", "0")) == 0


def examples(items: list[str]) -> str:
    """The first few of ``items`` and how many more, for a one-line message."""
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


@dataclass
class Findings:
    """What the reading of ``where`` (a source, as messages name it) found; see the module docstring."""

    where: str
    on_error: str = "stop"
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: list[BadImage] = field(default_factory=list)
    readable: int = 0  # image files that passed the check

    def note(self, text: str) -> None:
        self.notes.append(text.rstrip("."))

    def problem(self, text: str) -> None:
        self.problems.append(text.rstrip("."))

    def unreadable_text(self) -> str:
        total = self.readable + len(self.unreadable)
        first = self.unreadable[0]
        text = f"Cannot read the image {first.path!r}: {first.reason}"
        if len(self.unreadable) > 1:
            others = [f"{item.path!r} ({item.reason})" for item in self.unreadable[1:]]
            text += f" ({len(others)} more unreadable file(s): {examples(others)})"
        return f"{text}. Use {SKIP_HINT} to use the {self.readable} readable image(s) of {total} and skip the rest"

    def settle(self) -> None:
        """Raise one error listing every problem (and the notes) where there is one; else warn with the notes and
        the skipped files, once per run."""
        blocking = list(self.problems)
        if self.unreadable and self.on_error != "skip":
            blocking.insert(0, self.unreadable_text())
        if blocking:
            error = InvalidInputError if not self.problems else DatasetLayoutError
            listed = "; ".join(f"({number}) {text}" for number, text in enumerate(blocking, 1))
            listed = listed if len(blocking) > 1 else blocking[0]
            noted = f" Also found, not fatal: {'; '.join(self.notes)}." if self.notes else ""
            prefix = f"{self.where}: {len(blocking)} problem(s) to fix: " if len(blocking) > 1 else ""
            raise error(f"{prefix}{listed}.{noted}")
        if is_main_process():
            self._warn()

    def _warn(self) -> None:
        lines = [f"warning: {note}" for note in self.notes]
        if self.unreadable:
            total = self.readable + len(self.unreadable)
            lines.append(
                f"warning: skipped {len(self.unreadable)} of {total} image file(s) of {self.where} that cannot be read "
                "(on_error: skip):"
            )
            lines += [f"  {item.path}: {item.reason}" for item in self.unreadable]
        if lines:
            print("\n".join(lines), file=sys.stderr)
