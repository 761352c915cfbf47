"""Peak CPU tensor memory of a piece of code, exactly: what ``torch.cuda.max_memory_allocated`` gives on CUDA.

The process's resident set is what the OS sees, allocator caching, fragmentation and the Python/torch baseline
included; it moved by +-15 MB between identical runs here, more than the differences the benchmarks look for.
``torch.profiler`` with ``profile_memory=True`` records every allocation and free of the CPU allocator; their
running sum in time order is the live tensor memory, and its maximum the peak.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def cpu_peak_mb(fn: Callable[[], Any]) -> float:
    """Peak of the CPU tensor memory allocated while ``fn()`` runs, above the level before it, in MB."""
    from torch.profiler import ProfilerActivity, profile

    # Kineto's log levels: 0 verbose .. 4 error, 5 "USDT" trace markers. Level 6 keeps it quiet: on machines
    # without a GPU it logs "gpuGetDeviceCount failed" as an ERROR, and every profile() prints two USDT lines
    # (profiler_start/stop; `make bench` printed 120 of them). Neither is a problem here. A user's own
    # KINETO_LOG_LEVEL wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20
