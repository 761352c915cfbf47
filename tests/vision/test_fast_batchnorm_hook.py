"""trainer.fast_batchnorm: the vision task swaps in the fused batch norm on runs whose optimizer takes Hessians,
and the switch stays out of the experiment key (it changes no result beyond round-off)."""

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


@pytest.mark.parametrize("optim,flag,expected", [
    ("adahessian", "true", FastBatchNorm2d),
    ("adahessian", "false", torch.nn.BatchNorm2d),
    ("sgd", "true", torch.nn.BatchNorm2d),  # first-order: nothing to gain, the model stays torch's
])
def test_vision_build_swaps_batchnorm_only_for_hessian_optimizers_when_enabled(optim, flag, expected):
    assert _bn_types([f"optim={optim}", f"trainer.fast_batchnorm={flag}"]) == {expected}


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_profiles_enable_it_and_it_is_not_in_the_experiment_key(profile):
    cfg = compose_cfg([f"trainer={profile}"])
    assert OmegaConf.select(cfg, "trainer.fast_batchnorm") is True
    assert "fast_batchnorm" in _TRAINER_NOT_IN_KEY
