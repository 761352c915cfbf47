"""`python run.py task=iwslt14 optim=adahessian trainer=smoke data.source=synthetic`: a completed run record with
BLEU, validation history, timings and the semantics used, from the real launcher in a subprocess."""

from __future__ import annotations

import json
import math
import sys

from engine.record import iter_records


def test_run_py_smoke_iwslt14_adahessian_writes_a_completed_record_with_bleu(tmp_path, run_cmd):
    out = run_cmd([sys.executable, "run.py", "task=iwslt14", "optim=adahessian", "trainer=smoke",
                   "data.source=synthetic", "logger.mode=disabled", "trainer.progress=false",
                   f"paths.results_dir={tmp_path / 'results'}", f"paths.work_dir={tmp_path / 'ckpt'}",
                   "task.hessian_semantics=authors"], timeout=300)
    records = list(iter_records(tmp_path / "results"))
    assert len(records) == 1, out.stdout[-2000:]
    r = records[0]
    assert (r["task"], r["task_family"], r["optim"], r["scale"], r["data_source"]) == (
        "iwslt14", "translation", "adahessian", "smoke", "synthetic")
    assert r["status"] == "completed", r["error"]
    assert r["metric"] == {"name": "bleu", "higher_is_better": True}
    # 2 smoke "epochs" of 4 updates: two validation rows, then the test row of the averaged model
    vals, test = r["history"][:-1], r["history"][-1]
    assert [(h["epoch"], h["step"]) for h in vals] == [(1, 4), (2, 8)]
    assert all(math.isfinite(h["val_loss"]) and math.isfinite(h["train_loss"]) for h in vals)
    assert 0.0 <= test["bleu"] <= 100.0 and test["bleu"] == r["best_metric"] == r["final_metric"]
    assert test["bleu_fairseq"] is not None and abs(test["bleu"] - test["bleu_fairseq"]) < 0.01
    assert r["extra"]["loss_semantics"] == "authors"  # recorded, and passed to fairseq
    argv = r["extra"]["fairseq_train_argv"]
    assert argv[argv.index("--loss-semantics") + 1] == "authors" and "--user-dir" in argv
    assert r["extra"]["averaged_checkpoints"] == ["checkpoint_1_4.pt", "checkpoint_1_8.pt"]
    assert r["extra"]["bleu"]["n_sentences"] == 64
    t = r["timing"]
    assert t["n_hessian_steps"] == 8 and t["n_plain_steps"] == 0 and t["hessian_step_s"] > 0
    assert r["peak_rss_mb"] > 0 and r["hparams"]["block_size"] == 32 and r["hparams"]["lr"] == 0.047
    json.dumps(r)  # the record is plain JSON
