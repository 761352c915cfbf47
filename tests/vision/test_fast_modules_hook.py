"""trainer.fast_batchnorm / trainer.fast_conv: the vision task swaps in the fused batch norm and the fast
convolution on runs whose optimizer takes Hessians (auto: on the CPU, where they were measured faster), each switch
alone, and neither is in the experiment key (they change no result beyond round-off)."""

import pytest
import torch
from helpers import compose_cfg
from omegaconf import OmegaConf

import tasks.vision
from engine.launch import _TRAINER_NOT_IN_KEY
from optim.batchnorm import FastBatchNorm2d
from optim.conv import FastConv2d

BASE = ["task=cifar10_resnet20", "data.source=synthetic", "trainer=smoke", "data.synthetic.train_size=8",
        "data.synthetic.val_size=8"]
SWITCHES = {"fast_batchnorm": (torch.nn.modules.batchnorm._BatchNorm, FastBatchNorm2d, torch.nn.BatchNorm2d),
            "fast_conv": (torch.nn.modules.conv._ConvNd, FastConv2d, torch.nn.Conv2d)}


def _types(overrides, base_cls):
    model = tasks.vision.build(compose_cfg(BASE + overrides)).model
    return {type(m) for m in model.modules() if isinstance(m, base_cls)}


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("optim,flag,device,fast", [
    ("adahessian", "auto", "auto", True),  # this machine has no GPU: auto resolves to the CPU
    ("adahessian", "auto", "cpu", True),
    ("adahessian", "true", "cpu", True),
    ("adahessian", "false", "cpu", False),
    ("sgd", "true", "cpu", False),  # first-order: nothing to gain, the model stays torch's
])
def test_vision_build_swaps_modules_only_for_hessian_optimizers_when_enabled(switch, optim, flag, device, fast):
    if device == "auto" and torch.cuda.is_available():
        pytest.skip("auto resolves to CUDA on this machine")
    base_cls, fast_cls, torch_cls = SWITCHES[switch]
    other = next(s for s in SWITCHES if s != switch)
    overrides = [f"optim={optim}", f"trainer.{switch}={flag}", f"trainer.{other}=false", f"trainer.device={device}"]
    assert _types(overrides, base_cls) == {fast_cls if fast else torch_cls}
    # The other switch, off, left its modules as torch's.
    other_base, _, other_torch = SWITCHES[other]
    assert _types(overrides, other_base) == {other_torch}


@pytest.mark.parametrize("switch", SWITCHES)
def test_auto_leaves_cuda_runs_on_torchs_modules(monkeypatch, switch):
    # The decision only (no GPU work): with CUDA visible, auto resolves the device to CUDA and keeps torch's module.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = compose_cfg(BASE + ["optim=adahessian", f"trainer.{switch}=auto", "trainer.device=auto"])
    assert tasks.vision.use_fast_module(cfg, switch) is False
    cfg.trainer[switch] = True
    assert tasks.vision.use_fast_module(cfg, switch) is True


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("bad", ["yes", 1, "on"])
def test_bad_value_is_one_clear_error(switch, bad):
    cfg = compose_cfg(BASE + ["optim=adahessian"])
    cfg.trainer[switch] = bad
    with pytest.raises(ValueError, match=rf"trainer.{switch}=.* is not allowed; choose auto, true or false"):
        tasks.vision.use_fast_module(cfg, switch)


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("profile", ["paper", "smoke", "cpu"])
def test_profiles_default_to_auto_and_it_is_not_in_the_experiment_key(switch, profile):
    cfg = compose_cfg([f"trainer={profile}"])
    assert OmegaConf.select(cfg, f"trainer.{switch}") == "auto"
    assert switch in _TRAINER_NOT_IN_KEY


@pytest.mark.parametrize("switch", SWITCHES)
def test_switching_it_is_no_deviation_from_the_recipe(switch):
    from engine.recipe import compose_recipe, deviations

    recipe = compose_recipe("cifar10_resnet20", "adahessian", "paper")
    run = OmegaConf.to_container(compose_cfg(["task=cifar10_resnet20", "optim=adahessian", "trainer=paper",
                                              f"trainer.{switch}=false"]), resolve=True)
    assert deviations(run, recipe) == []
    run["trainer"]["grad_clip"] = 1.0  # a recipe setting still counts (the check can fail)
    assert deviations(run, recipe) == ["trainer.grad_clip=1.0"]
