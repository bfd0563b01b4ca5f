"""Choices a training run made about its data that the commands using the run follow on the same data
(docs/collections.md, "Unreadable images").

A user who trained with ``--on_error skip`` on a folder with one truncated JPEG should not have to say it again to
``evaluate``, ``embed`` and ``search index`` of that run on that folder: the run file records the choice (its config's
``on_error`` beside its ``dataset_path``), and these commands follow it, saying so, unless given ``--on_error``.
"""

from __future__ import annotations

import os
import sys

from ..data.problems import is_main_process
from ..errors import PUMAError
from ..runs.run_file import read_run_file


def followed_on_error(given: str | None, adapter: str | None, data_path: str | None) -> str:
    """The ``on_error`` a command uses on ``data_path``: the one ``given``, else the one the run ``adapter`` trained
    with on the same data (said once on stderr), else ``"stop"``."""
    if given is not None:
        return given
    recorded = recorded_on_error(adapter, data_path)
    if recorded is None:
        return "stop"
    if is_main_process() and recorded != "stop":
        print(
            f"note: on_error {recorded}, as the run {adapter!r} trained on {data_path!r} (its run file records it); "
            "give --on_error stop to refuse unreadable images instead",
            file=sys.stderr,
        )
    return recorded


def recorded_on_error(adapter: str | None, data_path: str | None) -> str | None:
    """The ``on_error`` the run folder ``adapter`` trained with, where it trained on ``data_path`` (the same folder or
    file); ``None`` otherwise (another source, a Hub adapter, a folder without a run file)."""
    if not adapter or not data_path or not os.path.isdir(adapter):
        return None
    try:
        run = read_run_file(adapter)
    except PUMAError:
        return None  # a damaged run file is refused, with its own message, where the model loads
    if run is None or not run.config.get("dataset_path"):
        return None
    if os.path.realpath(run.config["dataset_path"]) != os.path.realpath(data_path):
        return None
    return run.config.get("on_error")
