"""What a run measures about itself, one definition per record field: step timing and peak memory.

- ``timing``: :func:`timing_summary` (also used by the translation launcher for fairseq's steps);
- ``peak_rss_mb``: peak resident memory of the process (everything: model, data, autograd buffers, libraries);
- ``peak_tensor_mb``: peak bytes held by torch's CUDA caching allocator (the paper's notion of memory); None on
  CPU, where torch keeps no such count.
"""

from __future__ import annotations

import resource
import statistics
from typing import Any

import torch


def timing_summary(hessian_times: list[float], plain_times: list[float], samples: int | float,
                   wall: float) -> dict[str, Any]:
    """The record's ``timing``: median seconds of steps with and without a Hessian estimate, and throughput."""
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {
        "hessian_step_s": med(hessian_times),
        "plain_step_s": med(plain_times),
        "n_hessian_steps": len(hessian_times),
        "n_plain_steps": len(plain_times),
        "samples_per_s": samples / wall if wall > 0 else None,
        "wall_s": wall,
    }


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MiB of this process (or, ``children=True``, of its largest finished child)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def peak_tensor_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """Both peak-memory fields of a run record, for ``Run.update(**peak_memory(device))``."""
    return {"peak_rss_mb": peak_rss_mb(), "peak_tensor_mb": peak_tensor_mb(device)}
