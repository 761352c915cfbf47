#!/usr/bin/env python
"""Wall time of the quickstart run with ``trainer.num_threads=auto`` against torch's default thread count.

torch's default is one intra-op thread per core. On a shared or busy machine those threads spin against other
processes; ``auto`` (engine/resources.py) uses only the cores that are free. This runs the README's quickstart
command (``task=cifar10_resnet20 optim=adahessian data.source=synthetic trainer=smoke``) as separate processes,
alternating the two settings so that load changes hit both alike, and prints each time, the medians and their
ratio, with the machine's load average.

    python -m scripts.bench_threads [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.resources import free_cores, usable_cores

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ["task=cifar10_resnet20", "optim=adahessian", "data.source=synthetic", "trainer=smoke",
              "trainer.progress=false", "logger.mode=disabled"]


def one_run(threads: str, out: Path) -> float:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    argv = [sys.executable, "run.py", *QUICKSTART, f"trainer.num_threads={threads}", f"paths.results_dir={out}/r",
            f"paths.work_dir={out}/c"]
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting (alternating)")
    args = ap.parse_args()
    default = str(usable_cores())  # what torch would use: one thread per usable core
    print(f"usable cores {usable_cores()}, free now {free_cores()}, load average {os.getloadavg()[0]:.1f}")
    times: dict[str, list[float]] = {"auto": [], default: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for threads in (("auto", default) if i % 2 == 0 else (default, "auto")):
                t = one_run(threads, Path(tmp) / f"{threads}-{i}")
                times[threads].append(t)
                print(f"num_threads={threads:>4}: {t:6.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
    auto, full = statistics.median(times["auto"]), statistics.median(times[default])
    print(f"median: auto {auto:.1f} s, {default} threads {full:.1f} s; auto takes {auto / full:.2f}x the time")


if __name__ == "__main__":
    main()
