"""docs/extending.md, executed: its files (the blocks marked ``file=...``) are written to a temporary directory, a
toy second-order optimizer and a toy task family run end to end through run.py, and both appear in a table built
by scripts.report."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

from helpers import ROOT

from scripts.report.records import load_runs
from scripts.report.stats import summarize

DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"```\w+ file=(\S+)\n(.*?)```", re.S)


def _write_doc_files(dest):
    files = BLOCK.findall(DOC.read_text())
    assert {name for name, _ in files} == {"my_optim/diag_newton.py", "my_tasks/toy/__init__.py",
                                           "my_conf/task/toy_regression.yaml"}
    for name, text in files:
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (dest / "my_optim" / "__init__.py").write_text("")
    (dest / "my_tasks" / "__init__.py").write_text("")


def _run(tmp_path, *overrides):
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    p = subprocess.run([sys.executable, "run.py", f"hydra.searchpath=[file://{tmp_path}/my_conf]",
                        "task=toy_regression", "trainer=smoke", "trainer.progress=false", *overrides,
                        f"paths.results_dir={tmp_path}/results", f"paths.work_dir={tmp_path}/ck"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_toy_optimizer_and_toy_task_run_through_run_py_and_appear_in_a_table(tmp_path):
    _write_doc_files(tmp_path)
    ours = "my_optim.diag_newton:DiagNewton"
    _run(tmp_path, "optim=by_path", f"optim.name={ours}", "optim.lr=0.05", "+optim.update_each=2")
    nadam = "torch.optim:NAdam"  # a torch optimizer the suite has never registered
    _run(tmp_path, "optim=by_path", f"optim.name={nadam}", "optim.lr=0.01")

    runs = load_runs(tmp_path / "results")
    assert set(runs["task"]) == {"toy_regression"} and set(runs["status"]) == {"completed"}
    table = summarize(runs, ["task", "optim"]).set_index("optim")
    assert set(table.index) == {ours, nadam}
    for optim in (ours, nadam):
        row = table.loc[optim]
        assert row["n"] == 1 and math.isfinite(row["mean"]), row
    # The record holds the toy optimizer's options as hyperparameters, like any optimizer's.
    rec = runs[runs["optim"] == ours].iloc[0]
    assert rec["lr"] == 0.05
    import json

    data = json.loads(open(rec["path"]).read())
    assert data["hparams"]["update_each"] == 2 and data["task_family"] == "my_tasks.toy"
