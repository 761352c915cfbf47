"""The fairseq argument table derives from the registry: every registered optimizer has a row, Sophia-H maps to
the plugin's ``sophiah`` with its options, second-order ones get the loss semantics and refuse mixed precision."""

import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf

import optim
from tasks.translation.fairseq_args import FAIRSEQ_OPTIMIZERS, TranslationConfigError, train_plan


def _argv(overrides):
    c = OmegaConf.to_container(compose_cfg(overrides), resolve=True)
    return train_plan(c, "BIN", "SAVE", "STEPS", 0).argv


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_every_registered_optimizer_has_a_fairseq_row():
    assert set(FAIRSEQ_OPTIMIZERS) == set(optim.OPTIMIZERS)
    for name, spec in FAIRSEQ_OPTIMIZERS.items():
        assert (spec.semantics is not None) == optim.is_second_order(optim.REGISTRY[name]), name


def test_sophiah_maps_to_the_plugin_with_the_recipe_values():
    a = _argv(["task=iwslt14", "optim=sophiah", "optim.lr_scale=2"])
    assert _value(a, "--optimizer") == "sophiah" and float(_value(a, "--lr")) == pytest.approx(2 * 1.5e-3)
    assert _value(a, "--sophiah-betas") == "(0.96, 0.99)" and float(_value(a, "--sophiah-gamma")) == 0.01
    assert float(_value(a, "--sophiah-eps")) == 1e-12 and _value(a, "--update-each") == "10"
    # Sophia's estimate is of the mean minibatch loss, even where AdaHessian's recipe runs the authors' semantics.
    assert float(_value(a, "--weight-decay")) == 1e-4 and _value(a, "--loss-semantics") == "mean"
    assert _value(_argv(["task=iwslt14", "optim=sophiah", "task.hessian_semantics=authors"]),
                  "--loss-semantics") == "mean"
    with pytest.raises(TranslationConfigError, match="fp32 with optim=sophiah"):
        _argv(["task=iwslt14", "optim=sophiah", "trainer.precision=bf16"])
