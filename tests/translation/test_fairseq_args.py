"""The Hydra config -> fairseq command line mapping, on the real composed configs."""

from __future__ import annotations

import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf

from tasks.translation.fairseq_args import (
    TranslationConfigError,
    effective_task,
    generate_argv,
    train_plan,
    update_freq,
)


def _plan(overrides, cuda=0):
    c = OmegaConf.to_container(compose_cfg(overrides), resolve=True)
    return train_plan(c, "BIN", "SAVE", "STEPS", cuda)


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_paper_iwslt14_adahessian_command():
    p = _plan(["task=iwslt14", "optim=adahessian"], cuda=1)
    a = p.argv
    assert _value(a, "--optimizer") == "adahessian" and float(_value(a, "--lr")) == 0.047
    assert _value(a, "--adahessian-betas") == "(0.9, 0.98)" and float(_value(a, "--adahessian-eps")) == 1e-4
    assert _value(a, "--block-size") == "32" and float(_value(a, "--weight-decay")) == 1e-4
    assert _value(a, "--loss-semantics") == "authors"  # the authors' fork (docs/recipes.md)
    assert _value(a, "--arch") == "transformer_iwslt_de_en"
    assert {"--share-all-embeddings", "--encoder-normalize-before", "--decoder-normalize-before"} <= set(a)
    assert float(_value(a, "--dropout")) == 0.3  # the authors' scripts' dropout by default
    assert _value(a, "--max-tokens") == "4096" and _value(a, "--max-epoch") == "55"
    assert _value(a, "--lr-scheduler") == "inverse_sqrt" and _value(a, "--warmup-updates") == "8000"
    assert float(_value(a, "--warmup-init-lr")) == pytest.approx(0.047 * 1e-7 / 1.5e-3)  # the authors' 3.13e-6
    assert _value(a, "--criterion") == "label_smoothed_cross_entropy" and float(_value(a, "--label-smoothing")) == 0.1
    assert _value(a, "--keep-last-epochs") == "5" and p.average_last == 5
    assert "--cpu" not in a and _value(a, "--distributed-world-size") == "1" and "--max-update" not in a


def test_lr_sweep_scales_lr_and_block_sweep_sets_block():
    a = _plan(["task=iwslt14", "optim=adahessian", "optim.lr_scale=3", "optim.block_size=8"]).argv
    assert float(_value(a, "--lr")) == pytest.approx(0.141) and _value(a, "--block-size") == "8"
    assert float(_value(a, "--warmup-init-lr")) == pytest.approx(3 * 0.047 * 1e-7 / 1.5e-3)


def test_paper_dropout_and_mean_semantics_are_named_options():
    a = _plan(["task=iwslt14", "optim=adahessian", "task.model.dropout_preset=paper",
               "task.hessian_semantics=mean"]).argv
    assert (float(_value(a, "--dropout")), float(_value(a, "--attention-dropout")),
            float(_value(a, "--activation-dropout"))) == (0.0, 0.0, 0.0)
    assert _value(a, "--loss-semantics") == "mean"
    with pytest.raises(TranslationConfigError, match="dropout_preset"):
        _plan(["task=iwslt14", "optim=adamw", "task.model.dropout_preset=nope"])
    with pytest.raises(TranslationConfigError, match="hessian_semantics"):
        _plan(["task=iwslt14", "optim=adahessian", "task.hessian_semantics=sum"])


@pytest.mark.parametrize("optim,name,lr", [("adamw", "adam", 1.5e-3), ("adam", "torch_adam", 1.5e-3),
                                           ("sgd", "sgd", 0.1), ("adagrad", "adagrad", 0.01)])
def test_baselines_map_to_fairseq_optimizers(optim, name, lr):
    a = _plan(["task=iwslt14", f"optim={optim}"]).argv
    assert _value(a, "--optimizer") == name and float(_value(a, "--lr")) == pytest.approx(lr)
    assert "--loss-semantics" not in a
    if optim == "adamw":
        assert _value(a, "--adam-betas") == "(0.9, 0.98)" and float(_value(a, "--weight-decay")) == 1e-4


def test_smoke_profile_maps_limits_onto_updates_and_a_tiny_model():
    p = _plan(["task=iwslt14", "optim=adahessian", "trainer=smoke"])
    a = p.argv
    assert _value(a, "--batch-size") == "16" and "--max-tokens" not in a  # smoke batch = sentences
    assert p.max_update == 8 and _value(a, "--max-update") == "8"       # 2 epochs x 4 batches
    assert _value(a, "--validate-interval-updates") == "4" == _value(a, "--save-interval-updates")
    assert _value(a, "--max-valid-steps") == "2" and _value(a, "--encoder-layers") == "1"
    assert _value(a, "--encoder-embed-dim") == "32" and p.average_last == 2
    assert "--cpu" in a  # no CUDA here


def test_max_steps_saves_the_final_state_for_averaging():
    a = _plan(["task=iwslt14", "optim=adamw", "trainer.max_steps=300"]).argv
    assert _value(a, "--max-update") == "300" and _value(a, "--save-interval-updates") == "300"


def test_max_steps_before_the_first_interval_still_saves_a_checkpoint_to_average():
    # limit_train_batches 4 (an "epoch" of 4 updates) cut at 3 updates: fairseq saves numbered checkpoints only
    # on multiples of the interval, so the interval comes down to the stop.
    a = _plan(["task=iwslt14", "optim=adahessian", "trainer=smoke", "trainer.max_steps=3"]).argv
    assert _value(a, "--max-update") == "3"
    assert _value(a, "--save-interval-updates") == "3" == _value(a, "--validate-interval-updates")


def test_refusals():
    with pytest.raises(TranslationConfigError, match="fp32"):
        _plan(["task=iwslt14", "optim=adahessian", "trainer.precision=bf16"])
    with pytest.raises(TranslationConfigError, match="hessian_batch_fraction"):
        _plan(["task=iwslt14", "optim=adahessian", "trainer.hessian_batch_fraction=0.5"])
    with pytest.raises(TranslationConfigError, match="trainer.eval_every=5 is not allowed for translation"):
        _plan(["task=iwslt14", "optim=adamw", "trainer.eval_every=5"])
    with pytest.raises(TranslationConfigError, match="nesterov"):
        _plan(["task=iwslt14", "optim=sgd", "optim.nesterov=true"])
    with pytest.raises(TranslationConfigError, match="CUDA"):
        _plan(["task=iwslt14", "optim=adamw", "trainer.device=cuda"])
    assert "--bf16" in _plan(["task=iwslt14", "optim=adamw", "trainer.precision=bf16"]).argv


def test_wmt14_accumulates_to_the_papers_eight_gpus_and_uses_legacy_ddp_when_distributed():
    one = _plan(["task=wmt14", "optim=adahessian"], cuda=1)
    assert one.update_freq == 8 and _value(one.argv, "--update-freq") == "8"
    assert float(_value(one.argv, "--lr")) == 1.0 and _value(one.argv, "--arch") == "transformer_wmt_en_de"
    four = _plan(["task=wmt14", "optim=adahessian"], cuda=4)
    assert four.update_freq == 2 and _value(four.argv, "--distributed-world-size") == "4"
    assert _value(four.argv, "--ddp-backend") == "legacy_ddp"
    assert float(_value(_plan(["task=wmt14", "optim=adamw"], cuda=1).argv, "--lr")) == 7e-4
    assert update_freq({"update_freq": 3, "paper_gpus": 8}, 1) == 3


def test_generation_uses_the_papers_beam_and_length_penalty():
    for task, beam, lenpen in (("iwslt14", "5", "1.0"), ("wmt14", "4", "0.6")):
        t = effective_task(OmegaConf.to_container(compose_cfg([f"task={task}"]), resolve=True))
        a = generate_argv(t, "BIN", "ckpt.pt", cpu=True)
        assert (_value(a, "--beam"), _value(a, "--lenpen")) == (beam, lenpen)
        assert _value(a, "--required-batch-size-multiple") == "1" and "--remove-bpe" in a
    t = effective_task(OmegaConf.to_container(compose_cfg(["task=wmt14"]), resolve=True))
    assert t["bleu"] == {"lowercase": False, "compound_split": True, "sacrebleu_tokenize": "13a"}
