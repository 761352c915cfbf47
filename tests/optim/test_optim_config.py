"""The optimizer config is validated through the registry before anything is built or written: nested
``_target_``s are refused (never called), non-finite lr and malformed betas are one line, import paths work."""

import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, compose_cfg

from engine.launch import ConfigError, hparams_of, task_family, validate_optim


def test_nested_target_is_refused_and_never_called(tmp_path):
    marker = tmp_path / "pwned"
    cfg = compose_cfg([f"+optim.x={{_target_:os.system,_args_:['touch {marker}']}}"])
    with pytest.raises(ConfigError, match=r"optim.x._target_ is not allowed"):
        validate_optim(cfg.optim)
    cfg = compose_cfg(["optim._target_=os.system"])
    with pytest.raises(ConfigError, match=r"optim._target_='os.system' is not allowed"):
        validate_optim(cfg.optim)
    assert not marker.exists()


@pytest.mark.parametrize("overrides,message", [
    (["optim.lr=nan"], "optim=adahessian: optim.lr=nan is not allowed; it must be a finite number"),
    (["optim=adamw", "optim.betas=[0.9]"],
     "optim=adamw: optimizer 'adamw': betas=[0.9] is not allowed; it must be two numbers, each in [0, 1)"),
    (["optim=by_path", "optim.name=no_such_pkg.mod:Opt", "optim.lr=0.1"],
     "optim=no_such_pkg.mod:Opt: optimizer 'no_such_pkg.mod:Opt' does not import"),
    (["optim=by_path", "optim.name=torch.nn:Linear", "optim.lr=0.1"],
     "not a torch.optim.Optimizer subclass"),
    (["optim=sophiah", "optim.gamma=-1"], "SophiaH: invalid gamma=-1"),
])
def test_bad_optimizer_config_is_one_clear_message(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate_optim(compose_cfg(overrides).optim)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_run_py_refuses_before_writing_anything(tmp_path):
    marker = tmp_path / "pwned"
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    p = subprocess.run([sys.executable, "run.py", "trainer=smoke", "data.source=synthetic",
                        f"+optim.x={{_target_:os.system,_args_:['touch {marker}']}}",
                        f"paths.results_dir={tmp_path}/results", f"paths.work_dir={tmp_path}/ck"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "error: optim=adahessian: optim.x._target_ is not allowed" in p.stderr
    assert "Traceback" not in p.stderr
    assert not marker.exists() and not (tmp_path / "results" / "runs").exists()


def test_hparams_record_every_scalar_key_of_any_optimizer():
    cfg = {"optim": {"_target_": "optim.build_optimizer", "_partial_": True, "name": "sophiah", "lr": 1e-3,
                     "lr_scale": 2.0, "betas": [0.96, 0.99], "gamma": 0.01, "update_each": 10,
                     "per_set": {"embeddings": {"name": "adagrad", "lr": 0.01}}},
           "trainer": {"precision": "bf16"}}
    assert hparams_of(cfg) == {"lr": 1e-3, "lr_scale": 2.0, "betas": [0.96, 0.99], "gamma": 0.01, "update_each": 10,
                               "per_set.embeddings.name": "adagrad", "per_set.embeddings.lr": 0.01,
                               "hessian_batch_fraction": 1.0, "precision": "bf16"}


def test_task_family_by_name_or_import_path():
    assert task_family("vision").__name__ == "tasks.vision"
    assert task_family("tasks.vision").__name__ == "tasks.vision"
    with pytest.raises(ConfigError, match=r"task.family='no_such_family' does not import as tasks.no_such_family"):
        task_family("no_such_family")
    with pytest.raises(ConfigError, match=r"has no train\(cfg, run\)"):
        task_family("torch.nn")


def test_import_path_builds_on_dummy_params():
    validate_optim(compose_cfg(["optim=by_path", "optim.name=torch.optim:NAdam", "optim.lr=0.002",
                                "+optim.momentum_decay=0.004"]).optim)
    assert torch.optim.NAdam  # the class the path names
