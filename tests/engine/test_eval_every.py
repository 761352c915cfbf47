"""trainer.eval_every: evaluation rows inside an epoch (the curve of a one-epoch run), checked against the losses
the loop actually saw, the selection rule, the experiment key and an interrupted-and-resumed run."""

import glob
import json
import statistics

import pytest
from helpers import compose_cfg, sigterm_at_step

import engine.trainer
from engine.launch import launch

PTB = ["task=ptb_transformer", "optim=adamw", "data.synthetic.vocab_size=200", "data.synthetic.train_tokens=20000",
       "data.synthetic.valid_tokens=2000", "data.synthetic.test_tokens=2000"]


def records(root):
    return [json.loads(open(p).read()) for p in sorted(glob.glob(str(root / "results/runs/*/*/*.json")))]


def recording_steps(monkeypatch) -> list[float]:
    """The training loss of every step, as train_step returned it to the loop."""
    real, seen = engine.trainer.train_step, []

    def step(*a, **k):
        loss, hessian = real(*a, **k)
        seen.append(loss)
        return loss, hessian

    monkeypatch.setattr(engine.trainer, "train_step", step)
    return seen


def test_rows_every_n_steps_and_at_each_epoch_end(tmp_path, smoke_overrides, monkeypatch):
    losses = recording_steps(monkeypatch)
    cfg = compose_cfg([*PTB, *smoke_overrides, "trainer.epochs=2", "trainer.limit_train_batches=5",
                       "trainer.eval_every=2"])
    assert launch(cfg) == "completed"
    (rec,) = records(tmp_path)
    hist = rec["history"]
    # every 2nd step of the run (global steps, as fairseq's --validate-interval-updates) and every epoch's end
    assert [r["step"] for r in hist] == [2, 4, 5, 6, 8, 10]
    assert [r["epoch"] for r in hist] == [0.4, 0.8, 1, 1.2, 1.6, 2]
    # each row's train_loss: the mean over the steps since the previous evaluation (hand-sliced here)
    spans = [(0, 2), (2, 4), (4, 5), (5, 6), (6, 8), (8, 10)]
    assert len(losses) == 10
    for r, (a, b) in zip(hist, spans):
        assert r["train_loss"] == pytest.approx(statistics.fmean(losses[a:b]), rel=1e-12)
    best = min(hist, key=lambda r: r["val_ppl"])  # a within-epoch row may be the selected one
    assert rec["best_metric"] == best["test_ppl"] and rec["final_metric"] == hist[-1]["test_ppl"]


def test_a_within_epoch_row_can_be_selected_and_the_setting_is_part_of_the_key(tmp_path, smoke_overrides,
                                                                             monkeypatch):
    import tasks.language_model.metric as metric

    rows = iter([{"val_loss": 1.0, "val_ppl": 20.0, "test_loss": 1.0, "test_ppl": 45.0},   # step 1 (epoch 0.5)
                 {"val_loss": 1.0, "val_ppl": 25.0, "test_loss": 1.0, "test_ppl": 35.0}])  # step 2 (epoch end)
    monkeypatch.setattr(metric.LMEvaluator, "__call__", lambda self, *a, **k: next(rows))
    assert launch(compose_cfg([*PTB, *smoke_overrides, "trainer.epochs=1", "trainer.eval_every=1"])) == "completed"
    (rec,) = records(tmp_path)
    assert [r["epoch"] for r in rec["history"]] == [0.5, 1]
    assert (rec["best_metric"], rec["best_select"], rec["final_metric"]) == (45.0, 20.0, 35.0)
    monkeypatch.undo()
    # the same command without eval_every is another experiment: skip_completed does not take this record for it
    assert launch(compose_cfg([*PTB, *smoke_overrides, "trainer.epochs=1", "skip_completed=true"])) == "completed"
    a, b = records(tmp_path)
    assert a["key"] != b["key"] and len(a["history"]) + len(b["history"]) == 3


def test_sigterm_after_a_within_epoch_row_resumes_to_the_uninterrupted_history(tmp_path, smoke_overrides,
                                                                                monkeypatch):
    over = [*PTB, *smoke_overrides, "trainer.epochs=2", "trainer.eval_every=1"]  # 2 epochs of 2 steps
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert launch(compose_cfg([*over, f"paths.results_dir={full}/results", f"paths.work_dir={full}/ck"])) == \
        "completed"
    # SIGTERM during the first step of epoch 2: its within-epoch row is written, then the stop
    real_step = sigterm_at_step(monkeypatch, 3)
    cut_over = [*over, f"paths.results_dir={cut}/results", f"paths.work_dir={cut}/ck"]
    with pytest.raises(KeyboardInterrupt):
        launch(compose_cfg(cut_over))
    (rec,) = records(cut)
    assert rec["status"] == "interrupted" and [r["step"] for r in rec["history"]] == [1, 2, 3]
    monkeypatch.setattr(engine.trainer, "train_step", real_step)
    assert launch(compose_cfg([*cut_over, "resume=true"])) == "completed"
    (a,), (b,) = records(full), records(cut)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert [r["epoch"] for r in a["history"]] == [0.5, 1, 1.5, 2]
    assert strip(a["history"]) == strip(b["history"])


def test_records_made_before_the_setting_keep_their_key_and_recipe():
    from omegaconf import OmegaConf

    from engine.launch import _experiment_fields
    from engine.recipe import compose_recipe, deviations
    from engine.record import experiment_key

    now = compose_recipe("cifar10_resnet20", "adahessian", "cpu")
    before = OmegaConf.to_container(OmegaConf.create(now))
    del before["trainer"]["eval_every"]  # a record's config from before trainer.eval_every existed
    assert now["trainer"]["eval_every"] is None
    assert experiment_key(_experiment_fields(now)) == experiment_key(_experiment_fields(before))
    assert deviations(before, now) == []
    every = {**now, "trainer": {**now["trainer"], "eval_every": 5}}
    assert experiment_key(_experiment_fields(every)) != experiment_key(_experiment_fields(now))
    assert deviations(every, now) == ["trainer.eval_every=5"]
