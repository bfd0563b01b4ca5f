"""What every benchmark result records about where and how it was measured: machine, versions, load, commit.

The cores of the project's machines are shared between engineers, so a timing means little without the load it was
taken under; both benchmark scripts (``cost.py``, ``accuracy.py``) write :func:`run_info` before and the load after,
and check with :func:`check_output` that their output file may be written before they start.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any

from peft_puma.errors import ForeignContentError
from peft_puma.owned_paths import check_json_output
from peft_puma.source_commit import source_commit

PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets", "safetensors", "numpy", "peft_puma")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: on 2 shared cores, anything above 2 means the timings are stretched."""
    return [round(value, 2) for value in os.getloadavg()]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_info(torch_threads: int) -> dict[str, Any]:
    """Machine, versions, command, date and the load average at the start of a benchmark run."""
    import torch

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]) if sys.argv else "",
        "machine": {
            "cpu": cpu_model(),
            "cores_visible": os.cpu_count(),
            "torch_threads": torch_threads,
            "memory_gb": memory_total_gb(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
        },
        "versions": versions(),
        "git_commit": source_commit(),  # the checkout's HEAD, +dirty for uncommitted code
        "load_average_start": load_average(),
    }


def check_output(path: str) -> None:
    """Stop the script before any work when ``path`` cannot take its result: a folder, a missing parent folder (made
    here), or a file that is not a benchmark result of peft_puma (``peft_puma.owned_paths.check_json_output``)."""

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        check_json_output(path, "benchmark", "a benchmark result")
    except ForeignContentError as error:
        raise SystemExit(f"error: {error}") from None
