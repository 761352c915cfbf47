"""Every config composes, and each (task, optimizer) pair carries the paper's hyperparameters."""

import math

import pytest
from helpers import CONF, compose_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

import optim as optim_pkg

TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
OPTIMS = list(optim_pkg.OPTIMIZERS)  # the registry is the one list of optimizers
VISION = ["cifar10_resnet20", "cifar10_resnet32", "imagenet_resnet18"]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("optim", OPTIMS)
def test_every_task_optim_pair_composes_and_resolves(task, optim):
    cfg = compose_cfg([f"task={task}", f"optim={optim}"])
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["task"]["name"] == task and container["optim"]["name"] == optim
    assert container["task"]["metric"]["name"]
    assert container["data"]["source"] in ("real", "synthetic")
    assert callable(instantiate(cfg.optim))  # a _partial_ optimizer factory


def test_conf_optim_holds_one_file_per_registered_optimizer():
    files = {p.stem for p in (CONF / "optim").glob("*.yaml")}
    assert files == set(OPTIMS) | {"by_path"}


def test_optimizer_by_import_path_composes():
    cfg = compose_cfg(["optim=by_path", "optim.name=torch.optim:NAdam", "optim.lr=0.002"])
    import torch

    opt = instantiate(cfg.optim)([torch.nn.Parameter(torch.zeros(2))])
    assert type(opt) is torch.optim.NAdam and opt.param_groups[0]["lr"] == 0.002


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_trainer_profiles_compose(profile):
    cfg = compose_cfg([f"trainer={profile}"])
    assert cfg.trainer.name == profile
    if profile == "paper":
        assert cfg.trainer.epochs == 160 and cfg.trainer.batch_size == 256


def test_smoke_profile_is_the_paper_profile_with_stated_differences():
    import yaml

    smoke_file = yaml.safe_load((CONF / "trainer" / "smoke.yaml").read_text())
    assert smoke_file["defaults"] == ["paper", "_self_"]
    paper = OmegaConf.to_container(compose_cfg(["trainer=paper"]).trainer, resolve=True)
    smoke = OmegaConf.to_container(compose_cfg(["trainer=smoke"]).trainer, resolve=True)
    assert set(smoke) == set(paper)
    stated = {k for k in smoke_file if k != "defaults"}
    assert {k for k in smoke if smoke[k] != paper[k]} <= stated  # every difference is written in smoke.yaml
    assert all(smoke[k] == smoke_file[k] for k in stated)
    assert stated - {"name"} <= {"epochs", "batch_size", "limit_train_batches", "limit_val_batches", "num_workers",
                                 "log_every"}  # only what makes it a smoke run


def test_default_is_the_paper_cifar10_adahessian_run():
    cfg = compose_cfg([])
    o = cfg.optim
    assert (cfg.task.name, o.name, o.lr, tuple(o.betas), o.eps, o.hessian_power) == (
        "cifar10_resnet20", "adahessian", 0.15, (0.9, 0.999), 1e-4, 1.0)
    assert math.isclose(o.lr * o.weight_decay, 5e-4, rel_tol=1e-6)  # decoupled 5e-4 per step
    assert list(cfg.task.schedule.milestones) == [80, 120] and cfg.trainer.epochs == 160
    assert cfg.data.source == "real" and cfg.trainer.name == "paper"


@pytest.mark.parametrize("task,optim,lr,per_step_decay", [
    ("cifar10_resnet32", "sgd", 0.1, None),
    ("cifar10_resnet20", "adam", 1e-3, None),
    ("cifar10_resnet20", "adamw", 0.01, 5e-4),
    ("imagenet_resnet18", "adamw", 0.01, 1e-4),
    ("imagenet_resnet18", "adahessian", 0.15, 1e-4),
])
def test_paper_hyperparameters_per_pair(task, optim, lr, per_step_decay):
    o = compose_cfg([f"task={task}", f"optim={optim}"]).optim
    assert o.lr == lr
    if per_step_decay is not None:  # decoupled: torch multiplies weight_decay by lr
        assert math.isclose(o.lr * o.weight_decay, per_step_decay, rel_tol=1e-6)
    elif optim == "sgd":
        assert (o.momentum, o.weight_decay) == (0.9, 5e-4)


@pytest.mark.parametrize("launcher,target", [
    ("basic", "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
    ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
])
def test_launchers_compose(launcher, target):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config_name="config", overrides=[f"launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target


def test_every_task_optim_override_file_names_real_choices():
    for path in (CONF / "task_optim").glob("*.yaml"):
        task, optim = next((t, path.stem[len(t) + 1:]) for t in TASKS if path.stem.startswith(t + "_"))
        assert optim in OPTIMS, f"{path.name}: no optimizer config {optim!r}"
