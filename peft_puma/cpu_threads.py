"""How many threads torch should compute with on the CPU: the cores this process may really use (docs/training.md).

torch sizes its intra-op pool from the machine's cores. In a container limited by a CPU quota, or pinned to a few
cores, or with several training processes on one machine, that pool is larger than the CPU time available, and
oversubscribed threads spin and wait: a run measured here took 4x the CPU time with another CPU job beside it. So the
trainer and the benchmarks size the pool from the process's CPU affinity and its cgroup quota, shared among the
processes on the machine. ``OMP_NUM_THREADS``, when set, is the user's choice and is left alone.
"""

from __future__ import annotations

import math
import os

import torch

_CGROUP_V2 = "/sys/fs/cgroup/cpu.max"
_CGROUP_V1 = ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cgroup_cpu_limit(v2_path: str = _CGROUP_V2, v1_paths: tuple[str, str] = _CGROUP_V1) -> float | None:
    """The CPU quota of this process's cgroup in cores (``1.5`` = 150 ms per 100 ms), or ``None`` without a quota."""
    try:
        with open(v2_path, encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(v1_paths[0], encoding="ascii") as quota_file, open(v1_paths[1], encoding="ascii") as period_file:
            quota, period = int(quota_file.read()), int(period_file.read())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus() -> int:
    """Cores this process may run on: its CPU affinity, capped by the cgroup quota (rounded down, at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return max(1, cpus)


def configure_torch_threads(processes_per_machine: int = 1) -> int:
    """Set torch's intra-op threads to this process's share of :func:`available_cpus`; returns the count in use.

    With ``OMP_NUM_THREADS`` set, torch already follows it and nothing is changed.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = max(1, available_cpus() // max(1, processes_per_machine))
    torch.set_num_threads(threads)
    return threads
