"""A ledger of the reads of a test split: one JSON line per scoring, so that every test read behind a published figure
is on record (docs/benchmarks.md, "Test reads").

Off unless the environment variable ``PEFT_PUMA_TEST_READS`` names the ledger file: a user's own runs write nothing,
while the project's benchmark and main-job commands, run with ``PEFT_PUMA_TEST_READS=benchmarks/results/
test_reads.jsonl``, append to the committed ledger. Each line says when, at which commit, by which command, what was
scored (the split, the data source, the adapter), with which recipe (a hash of the config) and backbone (its
fingerprint), and the headline scores it produced.

A command that will read the test split checks the ledger at start-up, before any model loads
(:func:`check_test_reads`): a ledger that cannot be appended to is refused in one line; without the variable, in a
checkout of this project (where published figures are made), one warning line says the read will not be on record.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import WriteFailedError
from ..output_place import check_output_place, make_parent_folders
from ..source_commit import source_commit

LEDGER_VARIABLE = "PEFT_PUMA_TEST_READS"
TEST_SPLIT_NAME = "test"
PROJECT_LEDGER = os.path.join("benchmarks", "results", "test_reads.jsonl")  # the committed ledger, in a checkout
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_warned_unrecorded = False


class TestReadNotRecordedError(WriteFailedError):
    """The ledger could not take a test read's line: the read happened but is not on record."""

    __test__ = False  # a name pytest would otherwise collect


def check_test_reads(splits: Iterable[str], *, warn: bool = True) -> None:
    """At start-up, before any model loads, for a command that will score ``splits``: when one is the test split,
    the ledger named by ``PEFT_PUMA_TEST_READS`` must be a file that can be appended to (else one line, and nothing
    has run); without the variable, in a checkout of this project (where published figures are made), one warning
    line that the read will not be on record and how to put it there (``warn``: the main process says it)."""
    if TEST_SPLIT_NAME not in set(splits):
        return
    path = os.environ.get(LEDGER_VARIABLE)
    if path:
        _check_ledger_path(path)
    elif warn:
        _warn_unrecorded()


def _check_ledger_path(path: str) -> None:
    what = f"The test-read ledger ({LEDGER_VARIABLE})"
    if os.path.isdir(path):
        raise TestReadNotRecordedError(f"{what} {path!r} is a folder; name a .jsonl file (it is created if missing).")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise TestReadNotRecordedError(f"{what} {path!r} is not a regular file; name a .jsonl file.")
    check_output_place(path, what)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise TestReadNotRecordedError(f"{what} {path!r} cannot be appended to: it is not writable.")


def project_checkout() -> str | None:
    """The root of a git checkout of this project holding the working directory or the package (a folder with
    ``.git`` and the committed ledger), or ``None``."""
    for start in (os.getcwd(), _PACKAGE_ROOT):
        folder = os.path.abspath(start)
        while True:
            if os.path.lexists(os.path.join(folder, ".git")) and os.path.isfile(os.path.join(folder, PROJECT_LEDGER)):
                return folder
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return None


def _warn_unrecorded() -> None:
    global _warned_unrecorded
    root = project_checkout()
    if root is None or _warned_unrecorded:
        return
    _warned_unrecorded = True
    print(
        f"warning: this read of the test split is not on record: {LEDGER_VARIABLE} is not set in this checkout of "
        f"peft_puma ({root}); to record it, run the command as {LEDGER_VARIABLE}={os.path.join(root, PROJECT_LEDGER)} "
        '... (docs/benchmarks.md, "Test reads").',
        file=sys.stderr,
    )


def is_recorded(split: str) -> bool:
    """Whether a scoring of ``split`` goes on record now (the ledger is on and it is the test split), so that a
    caller computes what only the record needs (a backbone's fingerprint) only then."""
    return bool(os.environ.get(LEDGER_VARIABLE)) and split == TEST_SPLIT_NAME


def config_hash(values: Mapping[str, Any]) -> str:
    """A short, stable hash of all of a config's keys (``output_dir`` and ``seed`` included): two reads of one run
    carry the same one; two runs differ."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_test_read(
    split: str,
    scored: str,
    result: Mapping[str, Any],
    *,
    data_source: Any = None,
    config: Mapping[str, Any] | None = None,
    backbone: str | None = None,
    backbone_fingerprint: str | None = None,
    adapter: str | None = None,
) -> None:
    """Append one line to the ledger when ``split`` is the test split and the ledger is switched on; a ledger that
    cannot take it raises :class:`TestReadNotRecordedError` (the read happened: the caller saves its results first)."""
    if not is_recorded(split):
        return
    path = os.environ[LEDGER_VARIABLE]
    line = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": source_commit(),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else None,
        "scored": scored,
        "split": split,
        "data_source": data_source,
        "adapter": adapter,
        "config_hash": config_hash(config) if config is not None else None,
        "backbone": backbone,
        "backbone_fingerprint": backbone_fingerprint,
        "unified_recall_at_1": result.get("unified", {}).get("recall@1"),
        "harmonic_recall_at_1": (result.get("harmonic") or {}).get("recall@1"),
    }
    try:
        make_parent_folders(path)
        with open(path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # runs of several processes or benchmarks append whole lines
            handle.write(json.dumps(line, default=str) + "\n")
    except OSError as error:
        raise TestReadNotRecordedError(
            f"The test read of {scored!r} could not be added to the ledger {path} ({LEDGER_VARIABLE}): "
            f"{error.strerror or error}."
        ) from None
