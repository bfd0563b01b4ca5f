"""A run's class split: the record of which classes of a collection it trained on and held out
(:mod:`peft_puma.data.splits`), kept in the run folder as :data:`~.layout.SPLIT_FILE` so that ``evaluate``,
``embed`` and ``search`` score and show exactly the classes the run held out (docs/collections.md, "The split")."""

from __future__ import annotations

import os

from ..data.splits import SplitRecord
from .layout import SPLIT_FILE


def write_run_split(directory: str, record: SplitRecord | None) -> None:
    """Write ``record`` into the run folder ``directory`` (nothing for a source with its own splits)."""
    if record is not None:
        record.write(os.path.join(directory, SPLIT_FILE))


def run_split_path(directory: str | None) -> str | None:
    """The split record's path in the run folder ``directory``, where there is one."""
    path = os.path.join(directory, SPLIT_FILE) if directory else None
    return path if path and os.path.isfile(path) else None


def read_run_split(directory: str | None) -> SplitRecord | None:
    """The split record of the run folder ``directory``; ``None`` where there is none (a source with its own splits,
    a run from before the record, an adapter from the Hub or ``save_pretrained``)."""
    path = run_split_path(directory)
    return SplitRecord.read(path) if path else None
