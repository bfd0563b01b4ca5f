"""A ledger of the reads of a test split: one JSON line per scoring, so that every test read behind a published figure
is on record (docs/benchmarks.md, "Test reads").

Off unless the environment variable ``PEFT_PUMA_TEST_READS`` names the ledger file: a user's own runs write nothing,
while the project's benchmark and main-job commands, run with ``PEFT_PUMA_TEST_READS=benchmarks/results/
test_reads.jsonl``, append to the committed ledger. Each line says when, at which commit, by which command, what was
scored (the split, the data source, the adapter), with which recipe (a hash of the config) and backbone (its
fingerprint), and the headline scores it produced.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from ..source_commit import source_commit

LEDGER_VARIABLE = "PEFT_PUMA_TEST_READS"
TEST_SPLIT_NAME = "test"


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
    """Append one line to the ledger when ``split`` is the test split and the ledger is switched on."""
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # runs of several processes or benchmarks append whole lines
        handle.write(json.dumps(line, default=str) + "\n")
