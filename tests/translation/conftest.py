"""Fixtures of the translation tests: subprocess runner, a small synthetic corpus binarized once per session.

fairseq is never imported in the pytest process (it registers its own Hydra configs, including one named
``config``, which would leak into the suite's config tests); everything fairseq runs in subprocesses.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env["WANDB_MODE"] = "disabled"
    env["OMP_NUM_THREADS"] = "1"  # tiny models: threads only contend with the other test processes
    return env


def _run(argv: list[str], timeout: int = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=ROOT, env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="session")
def run_cmd():
    """``run_cmd(argv, timeout=, env=)``: run in the repository root with the repo on PYTHONPATH; fail loudly."""
    return _run


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def synthetic_bin(tmp_path_factory) -> Path:
    """A binarized synthetic de->en corpus (joined dictionary), as the launcher makes for data.source=synthetic."""
    from tasks.translation.prepare import binarize
    from tasks.translation.synthetic import SyntheticSpec, write_corpus

    root = tmp_path_factory.mktemp("synthetic")
    write_corpus(root / "raw", SyntheticSpec(n_train=400, n_valid=32, n_test=32, seed=1), src="de", tgt="en")
    binarize(root / "raw", root / "bin", "de", "en")
    return root / "bin"
