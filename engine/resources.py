"""How many CPU threads and data-loader workers a run uses when the config says ``auto``.

torch's default intra-op thread count is the machine's core count. On a shared or busy machine that is far too
many: OpenMP workers spin against other processes (the quickstart took 101 s with the default threads and 29 s
with one thread on a busy 2-core machine). ``auto`` counts the cores this process may actually use: its CPU
affinity (``os.sched_getaffinity``: taskset, SLURM, cgroup cpusets), a cgroup CPU quota (containers), minus the
cores other processes keep busy (the 1-minute load average), shared among the torchrun processes of this node.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota() -> float | None:
    try:  # cgroup v2: "max 100000" (no limit) or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on (affinity, capped by a container's CPU quota)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def free_cores(local_processes: int = 1) -> int:
    """Usable cores not kept busy by other processes, per process of this node (at least 1)."""
    n = usable_cores()
    try:
        busy = math.floor(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, (n - min(busy, n - 1)) // max(1, local_processes))


def auto_workers(local_processes: int = 1) -> int:
    """``num_workers: auto``: one data-loader worker per usable core but one (the training step's), at most 4 (the
    paper's setting)."""
    return min(4, max(0, usable_cores() // max(1, local_processes) - 1))


def choose(threads: int | str, workers: int | str, local_processes: int = 1) -> tuple[int, int, str]:
    """(intra-op threads, data-loader workers, one log line saying what was chosen and why).

    ``auto`` workers: one core per worker up to 4 (the paper's setting), always leaving this process's training
    step at least one core; ``auto`` threads: the free cores not given to workers (at least 1).
    """
    usable, free = usable_cores() // max(1, local_processes), free_cores(local_processes)
    n_workers = auto_workers(local_processes) if workers == "auto" else int(workers)
    n_threads = max(1, free - n_workers) if threads == "auto" else int(threads)
    line = (f"CPU: {n_threads} intra-op thread(s) ({threads}), {n_workers} data-loader worker(s) ({workers}); "
            f"{max(1, usable)} usable core(s) and {free} free per process")
    return n_threads, n_workers, line
