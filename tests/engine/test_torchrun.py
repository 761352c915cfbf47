"""torchrun with 2 CPU processes (gloo): one run, one record, DDP + AdaHessian's Hessian steps together."""

import glob
import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("optim,fraction", [("adahessian", 1.0), ("adahessian", 0.5), ("sgd", 1.0)])
def test_two_process_torchrun_writes_one_completed_record(optim, fraction, tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "run.py", "task=cifar10_resnet20", f"optim={optim}", "trainer=smoke", "data.source=synthetic",
           f"paths.results_dir={tmp_path}/results", f"paths.work_dir={tmp_path}/ck", "trainer.progress=false",
           "trainer.batch_size=8", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
           "trainer.epochs=2", f"trainer.hessian_batch_fraction={fraction}", "task.eval_batch_size=16"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (path,) = glob.glob(f"{tmp_path}/results/runs/*/*/*.json")  # rank 1 writes no record of its own
    rec = json.loads(open(path).read())
    assert rec["status"] == "completed" and rec["world_size"] == 2
    assert [h["step"] for h in rec["history"]] == [2, 4]
    assert rec["timing"]["n_hessian_steps"] == (4 if optim == "adahessian" else 0)
    assert len(glob.glob(f"{tmp_path}/ck/*/*/*/last.pt")) == 1
