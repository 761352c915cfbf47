"""The launcher's log monitor (record rows, divergence), step-log timings, and its refusals."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from engine.record import RunRecord
from engine.session import Run
from tasks.translation.launcher import TrainMonitor, read_step_log, resolve_data, timing_from_steps

VALID = '2026-01-01 00:00:00 | INFO | valid | {{"epoch": {e}, "valid_loss": "{v}", "valid_nll_loss": "1.0", ' \
        '"valid_ppl": "2.0", "valid_num_updates": "{u}"}}'
INNER = '2026-01-01 00:00:00 | INFO | train_inner | {{"epoch": 1, "loss": "{l}", "lr": "0.01", "num_updates": "{u}"}}'


@pytest.fixture
def run(tmp_path):
    rec = RunRecord.create(tmp_path, task="iwslt14", optim="adahessian", metric={"name": "bleu",
                                                                                 "higher_is_better": True})
    return Run(rec, tmp_path / "work")


def test_monitor_turns_validations_into_rows_and_resume_drops_uncheckpointed_ones(run):
    m = TrainMonitor(run, SimpleNamespace(interval_updates=4))
    for line in (INNER.format(l="7.0", u=1), INNER.format(l="6.0", u=4), VALID.format(e=1, v="5.5", u=4),
                 INNER.format(l="5.0", u=8), VALID.format(e=1, v="4.5", u=8)):
        m.on_line(line)
    h = run.record.data["history"]
    assert [(r["epoch"], r["step"], r["val_loss"]) for r in h] == [(1, 4, 5.5), (2, 8, 4.5)]
    assert h[0]["train_loss"] == 6.5 and h[1]["train_loss"] == 5.0 and h[0]["lr"] == 0.01
    assert m.diverged is None and run.record.data["best_metric"] is None  # no BLEU yet
    run.log_eval({"epoch": 2, "step": 8, "eval": "test", "bleu": 1.0})  # a test row of an earlier attempt
    m2 = TrainMonitor(run, SimpleNamespace(interval_updates=4))
    m2.on_line("x | INFO | fairseq.trainer | Loaded checkpoint /w/checkpoint_last.pt (epoch 1 @ 4 updates)")
    assert [r["step"] for r in run.record.data["history"]] == [4]


def test_monitor_reads_the_curve_of_the_configured_validation_subset(run):
    # The cpu scale validates on test (--valid-subset test): those lines are the curve, marked with their split.
    plan = SimpleNamespace(interval_updates=None, task={"fairseq_args": {"valid_subset": "test"}})
    m = TrainMonitor(run, plan)
    for line in (INNER.format(l="9.9", u=62), VALID.format(e=1, v="9.0", u=62),  # a "valid" line: not the curve
                 VALID.replace("valid", "test").format(e=1, v="9.901", u=62)):
        m.on_line(line)
    (row,) = run.record.data["history"]
    assert (row["epoch"], row["step"], row["val_loss"], row["val_subset"]) == (1, 62, 9.901, "test")
    assert row["train_loss"] == 9.9


@pytest.mark.parametrize("line", [INNER.format(l="nan", u=3), VALID.format(e=1, v="inf", u=4)])
def test_monitor_flags_non_finite_losses(run, line):
    m = TrainMonitor(run, SimpleNamespace(interval_updates=None))
    m.on_line(line)
    assert m.diverged and "non-finite" in m.diverged


def test_step_log_timings_split_hessian_and_plain_updates(tmp_path):
    log = tmp_path / "steps.jsonl"
    rows = [{"update": u, "dt": dt, "hessian": h, "nsentences": 10, "ntokens": 100, "peak_memory_mb": pk}
            for u, dt, h, pk in ((1, 3.0, True, 10), (2, 1.0, False, 12), (3, 5.0, True, 11), (2, 2.0, False, 12))]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    steps = read_step_log(log)
    assert [s["update"] for s in steps] == [1, 2, 3] and steps[1]["dt"] == 2.0  # resumed update 2 replaces
    timing, peak, extra = timing_from_steps(steps)
    assert timing["hessian_step_s"] == 4.0 and timing["plain_step_s"] == 2.0
    assert (timing["n_hessian_steps"], timing["n_plain_steps"], timing["wall_s"]) == (2, 1, 10.0)
    assert timing["samples_per_s"] == 3.0 and extra["tokens_per_s"] == 30.0 and peak == 12


def test_real_data_missing_says_how_to_prepare_it(tmp_path):
    cfg = {"data": {"source": "real", "root": str(tmp_path / "nowhere")}}
    with pytest.raises(FileNotFoundError, match="prepare_iwslt14.sh"):
        resolve_data(cfg, {"src": "de", "tgt": "en", "prepare_script": "scripts/prepare_iwslt14.sh"}, tmp_path,
                     echo=False)
