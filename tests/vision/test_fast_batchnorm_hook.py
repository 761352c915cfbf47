"""trainer.fast_batchnorm: the vision task swaps in the fused batch norm on runs whose optimizer takes Hessians
(auto: on the CPU, where it was measured faster), and the switch stays out of the experiment key (it changes no
result beyond round-off)."""

import pytest
import torch
from helpers import compose_cfg
from omegaconf import OmegaConf

import tasks.vision
from engine.launch import _TRAINER_NOT_IN_KEY
from optim.batchnorm import FastBatchNorm2d

BASE = ["task=cifar10_resnet20", "data.source=synthetic", "trainer=smoke", "data.synthetic.train_size=8",
        "data.synthetic.val_size=8"]


def _bn_types(overrides):
    model = tasks.vision.build(compose_cfg(BASE + overrides)).model
    return {type(m) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}


@pytest.mark.parametrize("optim,flag,device,expected", [
    ("adahessian", "auto", "auto", FastBatchNorm2d),  # this machine has no GPU: auto resolves to the CPU
    ("adahessian", "auto", "cpu", FastBatchNorm2d),
    ("adahessian", "true", "cpu", FastBatchNorm2d),
    ("adahessian", "false", "cpu", torch.nn.BatchNorm2d),
    ("sgd", "true", "cpu", torch.nn.BatchNorm2d),  # first-order: nothing to gain, the model stays torch's
])
def test_vision_build_swaps_batchnorm_only_for_hessian_optimizers_when_enabled(optim, flag, device, expected):
    if device == "auto" and torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA on this machine")
    assert _bn_types([f"optim={optim}", f"trainer.fast_batchnorm={flag}", f"trainer.device={device}"]) == {expected}


def test_auto_leaves_cuda_runs_on_torchs_batch_norm(monkeypatch):
    # The decision only (no GPU work): with CUDA visible, auto resolves the device to CUDA and keeps torch's module.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = compose_cfg(BASE + ["optim=adahessian", "trainer.fast_batchnorm=auto", "trainer.device=auto"])
    assert tasks.vision.use_fast_batchnorm(cfg) is False
    cfg.trainer.fast_batchnorm = True
    assert tasks.vision.use_fast_batchnorm(cfg) is True


@pytest.mark.parametrize("bad", ["yes", 1, "on"])
def test_bad_value_is_one_clear_error(bad):
    cfg = compose_cfg(BASE + ["optim=adahessian"])
    cfg.trainer.fast_batchnorm = bad
    with pytest.raises(ValueError, match=r"trainer.fast_batchnorm=.* is not allowed; choose auto, true or false"):
        tasks.vision.use_fast_batchnorm(cfg)


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_profiles_default_to_auto_and_it_is_not_in_the_experiment_key(profile):
    cfg = compose_cfg([f"trainer={profile}"])
    assert OmegaConf.select(cfg, "trainer.fast_batchnorm") == "auto"
    assert "fast_batchnorm" in _TRAINER_NOT_IN_KEY


def test_switching_it_is_no_deviation_from_the_recipe():
    from engine.recipe import compose_recipe, deviations

    recipe = compose_recipe("cifar10_resnet20", "adahessian", "paper")
    run = OmegaConf.to_container(compose_cfg(["task=cifar10_resnet20", "optim=adahessian", "trainer=paper",
                                              "trainer.fast_batchnorm=false"]), resolve=True)
    assert deviations(run, recipe) == []
    run["trainer"]["grad_clip"] = 1.0  # a recipe setting still counts (the check can fail)
    assert deviations(run, recipe) == ["trainer.grad_clip=1.0"]
