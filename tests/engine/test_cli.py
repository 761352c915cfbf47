"""run.py's command-line behaviour on bad input: one clear message naming the value and what is allowed."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT


def run_cli(*args, tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "run.py", *args, f"paths.results_dir={tmp_path}/results",
                           f"paths.work_dir={tmp_path}/ck"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_unknown_optimizer_lists_the_choices(tmp_path):
    p = run_cli("optim=lion", tmp_path=tmp_path)
    assert p.returncode != 0
    assert "Could not find 'optim/lion'" in p.stderr
    for choice in ("adagrad", "adahessian", "adam", "adamw", "sgd"):
        assert f"\t{choice}" in p.stderr


def test_unknown_task_lists_the_choices(tmp_path):
    p = run_cli("task=mnist", tmp_path=tmp_path)
    assert p.returncode != 0 and "Could not find 'task/mnist'" in p.stderr and "\tcifar10_resnet20" in p.stderr


@pytest.mark.parametrize("override,message", [
    ("trainer.precision=fp8", "error: trainer.precision='fp8' is not allowed; choose one of fp32, bf16, fp16"),
    ("data.source=web", "error: data.source='web' is not allowed; choose one of real, synthetic"),
    ("optim.block_size=0",
     "error: optim=adahessian: AdaHessian: invalid block_size=0; allowed: an integer in [1, inf)"),
    ("seed=abc", "error: seed='abc' is not allowed; it must be a non-negative integer"),
    ("trainer.limit_train_batches=-1",
     "error: trainer.limit_train_batches=-1 is not allowed; it must be null (no limit) or a positive integer"),
])
def test_bad_value_is_one_clear_line_and_no_record(override, message, tmp_path):
    p = run_cli("trainer=smoke", override, tmp_path=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "results" / "runs").exists()  # rejected before anything is written


def test_missing_dataset_says_where_it_looked(tmp_path):
    p = run_cli("trainer=smoke", f"paths.data_dir={tmp_path}/nodata", tmp_path=tmp_path)
    assert p.returncode == 2
    assert f"error: CIFAR-10 not found: looked for {tmp_path}/nodata/cifar10/cifar-10-batches-py" in p.stderr
    assert "scripts/prepare_data.py cifar10" in p.stderr


def test_sigterm_is_recorded_interrupted_and_exits_143(tmp_path):
    """What SLURM does before preemption: SIGTERM to run.py; the run stops after its step, one line, no traceback."""
    import glob
    import json
    import signal
    import time

    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "run.py", "trainer=smoke", "data.source=synthetic", "optim=sgd",
                          "trainer.epochs=1000", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                          "trainer.batch_size=8", "task.eval_batch_size=16", "trainer.progress=false",
                          f"paths.results_dir={tmp_path}/results", f"paths.work_dir={tmp_path}/ck"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait for the first evaluation to be on record
        paths = glob.glob(f"{tmp_path}/results/runs/*/*/*.json")
        if paths and json.loads(open(paths[0]).read())["history"]:
            break
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM; the run is recorded as interrupted (continue it with resume=true)" in err
    assert "Traceback" not in err
    (path,) = glob.glob(f"{tmp_path}/results/runs/*/*/*.json")
    rec = json.loads(open(path).read())
    assert (rec["status"], rec["error"]) == ("interrupted", "SIGTERM")
