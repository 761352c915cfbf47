"""`make cpu-results CPU_RESULTS_DRY=1`: the whole cpu-scale pipeline (every comparison, both sweeps, Table 8,
tables, notebooks) on synthetic data with 1-2 steps a run, then the same command again, which runs nothing new."""

import glob
import json
import os
import subprocess

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow

STEPS = ["sweep compare --tasks cifar10_resnet20", "sweep compare --tasks iwslt14",
         "sweep compare --tasks ptb_transformer", "sweep compare --tasks criteo_dlrm",
         "sweep lr --task ptb_transformer", "sweep block --task ptb_transformer",
         "scripts.speed --task cifar10_resnet20", "scripts.tables", "scripts.notebooks"]


def make(out):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    return subprocess.run(["make", "--no-print-directory", "cpu-results", "CPU_RESULTS_DRY=1", "CPU_THREADS=1",
                           f"CPU_RESULTS={out}", f"CPU_WORK={out.parent / 'checkpoints'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)


def records(out):
    return [json.load(open(p)) for p in glob.glob(f"{out}/runs/*/*/*.json")]


def test_make_cpu_results_dry_runs_every_step_and_resumes(tmp_path):
    out = tmp_path / "cpu"
    r = make(out)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    log = (out / "RUN.md").read_text()
    for step in STEPS:
        assert any(step in line and "exit 0" in line for line in log.splitlines()), (step, log)
    assert "CPU_RESULTS_DRY=1" in log and "finished" in log
    recs = records(out)
    assert {r["scale"] for r in recs} == {"cpu"} and {r["data_source"] for r in recs} == {"synthetic"}
    assert all(r["status"] == "completed" for r in recs), [(r["task"], r["optim"], r["status"]) for r in recs]
    have = {(r["task"], r["optim"]) for r in recs}
    assert {("cifar10_resnet20", o) for o in ("sgd", "adam", "adamw", "adahessian")} <= have
    assert {("iwslt14", o) for o in ("sgd", "adamw", "adahessian")} <= have
    assert {("criteo_dlrm", o) for o in ("adagrad", "adahessian")} <= have
    ptb = [r for r in recs if r["task"] == "ptb_transformer"]
    # Table 4 (3) + LR sweep x0.5, x2 of AdamW and AdaHessian (4; x1 is Table 4's) + block 1, 32 (2; 4 is the default)
    assert len(ptb) == 9
    tables = {os.path.basename(p) for p in glob.glob(f"{out}/tables/*.md")}
    for name in ("table2_vision", "table3_translation", "table4_lm", "fig6_dlrm", "table6_lr_ptb_transformer",
                 "table7_block_ptb_transformer", "table8_speed_cifar10_resnet20"):
        assert any(t.startswith(name) and "cpu" in t for t in tables), (name, tables)
    assert glob.glob(f"{out}/figures/fig_lr_ptb_transformer*cpu*.png")
    assert glob.glob(f"{out}/notebooks/*.ipynb")

    # Resumable: the same command again finds every run completed and starts none.
    r = make(out)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert len(records(out)) == len(recs)
    assert r.stdout.count("skipping: completed record exists") + r.stderr.count("skipping: completed record") >= 1
    # The log keeps the first invocation's section and adds the second's.
    log2 = (out / "RUN.md").read_text()
    assert log2.startswith(log) and log2.count("## invocation") == 2 and log2.count("finished") == 2
