"""PTB end to end through the launcher: records with the best-validation test perplexity, real files, learnability."""

import glob
import json
import math

import numpy as np
import pytest
import torch
from helpers import compose_cfg

from engine.launch import launch
from tasks.language_model.data import MarkovSource

# A small synthetic vocabulary keeps these runs to seconds; the paper-size vocabulary is the same code path.
SMALL = ["data.synthetic.vocab_size=200", "data.synthetic.train_tokens=20000", "data.synthetic.valid_tokens=2000",
         "data.synthetic.test_tokens=2000"]


def records(tmp_path):
    return [json.loads(open(p).read()) for p in sorted(glob.glob(str(tmp_path / "results/runs/*/*/*.json")))]


@pytest.mark.parametrize("optim", ["sgd", "adamw", "adahessian"])
def test_smoke_run_records_test_ppl_of_the_best_validation_epoch(optim, tmp_path, smoke_overrides):
    cfg = compose_cfg(["task=ptb_transformer", f"optim={optim}", *smoke_overrides, *SMALL,
                       "task.schedule.warmup_steps=2"])
    assert launch(cfg) == "completed"
    (rec,) = records(tmp_path)
    assert (rec["task"], rec["optim"], rec["status"], rec["data_source"]) == (
        "ptb_transformer", optim, "completed", "synthetic")
    assert rec["metric"] == {"name": "test_ppl", "higher_is_better": False, "select_by": "val_ppl",
                             "select_higher_is_better": False}
    hist = rec["history"]
    assert [r["step"] for r in hist] == [2, 4]  # smoke: 2 epochs of 2 batches
    for r in hist:
        assert math.isclose(r["val_ppl"], math.exp(r["val_loss"]), rel_tol=1e-9)
        assert math.isclose(r["test_ppl"], math.exp(r["test_loss"]), rel_tol=1e-9)
    best = min(hist, key=lambda r: r["val_ppl"])
    assert rec["best_metric"] == best["test_ppl"] and rec["best_select"] == best["val_ppl"]
    assert rec["final_metric"] == hist[-1]["test_ppl"]
    t = rec["timing"]
    assert (t["n_hessian_steps"], t["n_plain_steps"]) == ((4, 0) if optim == "adahessian" else (0, 4))
    assert t["samples_per_s"] > 0 and math.isclose(t["samples_per_s"] * t["wall_s"], 4 * 8 * 32)  # tokens
    lm = rec["extra"]["language_model"]
    assert lm["model"]["n_layers"] == 3 and lm["model"]["d_model"] == 32 and lm["bptt"] == 32  # smoke profile
    assert lm["model"]["arch"] == "tensorized" and lm["label_smoothing"] == 0.1
    # 20,000 tokens in 8 streams of 2,500: 2,499 targets per stream in windows of 32 -> 79 batches per epoch
    assert lm["train_batches"] == 79 and lm["vocab_size"] == 200
    assert rec["hparams"]["lr"] == rec["config"]["optim"]["lr"]


def test_best_validation_selection_can_differ_from_the_best_test(tmp_path, smoke_overrides, monkeypatch):
    # Force evaluations whose best validation is not the best test: the record must follow validation.
    import tasks.language_model.metric as metric

    rows = iter([{"val_loss": 1.0, "val_ppl": 30.0, "test_loss": 1.0, "test_ppl": 40.0},
                 {"val_loss": 1.0, "val_ppl": 20.0, "test_loss": 1.0, "test_ppl": 45.0},
                 {"val_loss": 1.0, "val_ppl": 25.0, "test_loss": 1.0, "test_ppl": 35.0}])
    monkeypatch.setattr(metric.LMEvaluator, "__call__", lambda self, *a, **k: next(rows))
    cfg = compose_cfg(["task=ptb_transformer", "optim=adamw", *smoke_overrides, *SMALL, "trainer.epochs=3",
                       "trainer.limit_train_batches=1"])
    launch(cfg)
    (rec,) = records(tmp_path)
    assert rec["best_metric"] == 45.0 and rec["best_select"] == 20.0 and rec["final_metric"] == 35.0


def test_synthetic_stream_is_learnt_well_below_the_unigram_perplexity(tmp_path, smoke_overrides):
    s = dict(vocab_size=40, successors=3, restart_prob=0.1, zipf=1.1, seed=0)
    source = MarkovSource(**s)
    floor = math.exp(source.entropy_rate())
    cfg = compose_cfg(["task=ptb_transformer", "optim=adamw", *smoke_overrides,
                       *[f"data.synthetic.{k}={v}" for k, v in s.items()],
                       "data.synthetic.train_tokens=30000", "data.synthetic.valid_tokens=3000",
                       "data.synthetic.test_tokens=3000", "optim.lr=1e-2", "task.schedule.warmup_steps=10",
                       "trainer.epochs=3", "trainer.limit_train_batches=40", "trainer.limit_val_batches=null",
                       "trainer.batch_size=16", "task.bptt=32", "task.eval_batch_size=10",
                       "task.profiles.smoke.model.dropout=0.0"])
    assert launch(cfg) == "completed"
    (rec,) = records(tmp_path)
    first, last = rec["history"][0], rec["history"][-1]
    assert first["step"] == 40 and last["step"] == 120
    # A uniform guess scores 40 and the best unigram model 16.6; the chain's floor is 3.7. Learning the
    # transitions (not just word frequencies) brings the model close to the floor.
    unigram = math.exp(-(source.stationary() * np.log(source.stationary())).sum())
    assert floor < 4 and unigram > 16
    assert last["test_ppl"] < 1.5 * floor and last["val_ppl"] < 1.5 * floor  # measured: 4.5, 4.1
    assert last["train_loss"] < first["train_loss"] and last["test_ppl"] <= first["test_ppl"]
    assert rec["best_metric"] < 1.5 * floor


def write_ptb(root):
    root.mkdir(parents=True)
    words = ["the", "cat", "sat", "on", "mat", "<unk>", "a", "dog"]
    g = torch.Generator().manual_seed(0)
    for split, n_lines in (("train", 300), ("valid", 40), ("test", 40)):
        lines = [" " + " ".join(words[i] for i in torch.randint(0, 8, (6,), generator=g).tolist()) + " \n"
                 for _ in range(n_lines)]
        (root / f"ptb.{split}.txt").write_text("".join(lines))


def test_real_ptb_files_end_to_end(tmp_path, smoke_overrides):
    root = tmp_path / "ptb"
    write_ptb(root)
    cfg = compose_cfg(["task=ptb_transformer", "optim=adahessian", *smoke_overrides, "data.source=real",
                       f"data.root={root}", "trainer.epochs=1", "trainer.limit_val_batches=null"])
    assert launch(cfg) == "completed"
    (rec,) = records(tmp_path)
    lm = rec["extra"]["language_model"]
    assert rec["data_source"] == "real" and lm["source"] == "real" and lm["vocab_size"] == 9  # 8 words + <eos>
    assert lm["tokens"] == {"train": 2100, "valid": 280, "test": 280}  # 7 tokens per line
    assert rec["history"][0]["test_ppl"] > 1.0 and rec["status"] == "completed"


def test_missing_ptb_stops_the_run_with_the_paths(tmp_path, smoke_overrides):
    cfg = compose_cfg(["task=ptb_transformer", "optim=sgd", *smoke_overrides, "data.source=real",
                       f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="nowhere/ptb.train.txt"):
        launch(cfg)
