"""Make variable defaults and the results/ layout (what the repository ships vs what a user's runs write)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["sweep-lr", "sweep-block", "sweep-every", "compare"])
def test_sweep_targets_default_to_three_seeds(target):
    # $(or $(SEEDS),0,1,2) split at the commas and gave --seeds 0
    out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "--seeds 0,1,2 " in out and "--scale paper " in out
    out = subprocess.run(["make", "-n", target, "SEEDS=3,4"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "--seeds 3,4 " in out


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_user_outputs_are_ignored_and_shipped_results_are_not_in_them():
    user = ["results/runs/t/o/r.json", "results/tables/table2_vision.md", "results/figures/f.png",
            "results/notebooks/training_and_tables.ipynb", "results/demo/runs/x.json"]
    r = subprocess.run(["git", "check-ignore", *user], cwd=ROOT, capture_output=True, text=True)
    assert sorted(r.stdout.split()) == sorted(user)
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    # what the repository ships is never where a command writes
    assert not [t for t in tracked if t.startswith(("results/runs/", "results/tables/", "results/figures/",
                                                    "results/notebooks/", "results/demo/"))]
    assert "results/cpu/2026-11-28/bench_optim_cpu.md" in tracked


def test_memory_peak_is_quiet():
    # every torch.profiler session printed "USDT ... profiler_start" / "profiler_stop" (make bench: 120 lines)
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    code = ("import torch\nfrom scripts.memory_peak import cpu_peak_mb\n"
            "print(round(cpu_peak_mb(lambda: torch.ones(256, 1024) * 2), 1))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) >= 1.0  # 256 x 1024 float32 = 1 MiB, twice (ones, then the product)
    assert "USDT" not in r.stderr and "profiler_start" not in r.stderr and "ERROR" not in r.stderr
