"""Aggregation over hand-made run records; every expected number below is worked out by hand in the comments."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from records_factory import make_record
from scipy import stats as sps

from scripts.report.build import comparison_table, sweep_table
from scripts.report.defaults import fixed_defaults, hydra_defaults
from scripts.report.outputs import write_comparison
from scripts.report.records import load_runs
from scripts.report.stats import summarize, welch

AH_DEFAULTS = fixed_defaults({("cifar10_resnet20", "adahessian"): {"block_size": 1, "update_each": 1},
                              ("iwslt14", "adahessian"): {"block_size": 32, "update_each": 1}},
                             hessian_batch_fraction=1.0)


def _vision(tmp_path):
    # SGD 91.0, 91.5, 91.2: mean 91.2333; deviations -0.2333, +0.2667, -0.0333; squares sum 0.126667;
    # sample variance 0.063333, std 0.251661.
    # AdaHessian 92.0, 92.5, 92.3: mean 92.2667, same deviations pattern -> std 0.251661.
    for s, (ah, sgd) in enumerate([(92.0, 91.0), (92.5, 91.5), (92.3, 91.2)]):
        make_record(tmp_path, "cifar10_resnet20", "adahessian", s, ah)
        make_record(tmp_path, "cifar10_resnet20", "sgd", s, sgd)
    # AdamW: 91.9 and 92.1 completed (mean 92.0, std 0.141421), one diverged (never averaged in)
    make_record(tmp_path, "cifar10_resnet20", "adamw", 0, 91.9)
    make_record(tmp_path, "cifar10_resnet20", "adamw", 1, 92.1)
    make_record(tmp_path, "cifar10_resnet20", "adamw", 2, None, status="diverged")
    # Adam: only a failed run
    make_record(tmp_path, "cifar10_resnet20", "adam", 0, None, status="failed", error="Traceback\nValueError: boom")
    # sweep runs of the same task/optimizer that must NOT enter Table 2
    make_record(tmp_path, "cifar10_resnet20", "adahessian", 0, 10.0, hparams={"lr_scale": 2.0})
    make_record(tmp_path, "cifar10_resnet20", "adahessian", 0, 20.0, hparams={"block_size": 4})
    make_record(tmp_path, "cifar10_resnet20", "adahessian", 0, 30.0, hparams={"update_each": 3})
    return load_runs(tmp_path)


def test_summarize_mean_std_n_by_hand(tmp_path):
    runs = _vision(tmp_path)
    runs = runs[runs["lr_scale"] == 1.0]
    s = summarize(runs[(runs["block_size"].isna() | (runs["block_size"] == 1))
                       & (runs["update_each"].isna() | (runs["update_each"] == 1))], ["task", "optim"])
    s = s.set_index("optim")
    assert s.loc["sgd", "n"] == 3
    assert s.loc["sgd", "mean"] == pytest.approx(91.233333, abs=1e-6)
    assert s.loc["sgd", "std"] == pytest.approx(0.251661, abs=1e-6)
    assert s.loc["adahessian", "mean"] == pytest.approx(92.266667, abs=1e-6)
    assert s.loc["adamw", "n"] == 2 and s.loc["adamw", "n_diverged"] == 1 and s.loc["adamw", "n_total"] == 3
    assert s.loc["adamw", "mean"] == pytest.approx(92.0) and s.loc["adamw", "std"] == pytest.approx(0.141421, abs=1e-6)
    assert s.loc["adam", "n"] == 0 and s.loc["adam", "n_failed"] == 1 and math.isnan(s.loc["adam", "mean"])
    assert s.loc["sgd", "seeds"] == [0, 1, 2]


def test_single_run_has_no_std(tmp_path):
    make_record(tmp_path, "wmt14", "adamw", 0, 28.0)
    s = summarize(load_runs(tmp_path), ["optim"])
    assert s.loc[0, "n"] == 1 and s.loc[0, "mean"] == 28.0 and math.isnan(s.loc[0, "std"])


def test_welch_by_hand():
    # a = 1,2,3: mean 2, var 1; b = 4,5,7: mean 16/3, var 7/3. se^2 = 1/3 + 7/9 = 10/9; t = (2 - 16/3)/sqrt(10/9)
    # = -3.16228. Welch df = (10/9)^2 / ((1/3)^2/2 + (7/9)^2/2) = 1.234568 / 0.358025 = 3.448276.
    t, p = welch([1, 2, 3], [4, 5, 7])
    assert t == pytest.approx(-3.162278, abs=1e-6)
    assert p == pytest.approx(2 * sps.t.sf(3.162278, 3.448276), rel=1e-5)
    assert math.isnan(welch([1, 2], [4, 5, 7])[1])  # fewer than 3 seeds: no test


def test_dedupe_keeps_one_outcome_per_experiment(tmp_path):
    # the same experiment key: failed first, then re-run and completed -> the completed one counts, once
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, None, status="failed", key="k1")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 90.0, key="k1")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 1, 91.0, key="k2")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 1, 93.0, key="k2")  # forced rerun: the latest wins
    runs = load_runs(tmp_path)
    assert len(runs) == 2
    r0 = runs[runs["seed"] == 0].iloc[0]
    assert r0["status"] == "completed" and r0["n_attempts"] == 2
    assert runs[runs["seed"] == 1].iloc[0]["best_metric"] == 93.0
    assert len(load_runs(tmp_path, dedupe_runs=False)) == 4


def test_table2_cells_published_diff_significance_missing(tmp_path):
    runs = _vision(tmp_path)
    t = comparison_table(runs, "2", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    md = t.md.set_index("Optimizer")
    # ours, published (results/paper/results.csv) and ours - published
    assert md.loc["SGD", "CIFAR-10 ResNet20"] == "91.23 ± 0.25 (n=3)"
    assert md.loc["SGD", "CIFAR-10 ResNet20 paper"] == "92.08 ± 0.08"
    assert md.loc["SGD", "CIFAR-10 ResNet20 Δ"] == "-0.85"  # 91.2333 - 92.08
    assert md.loc["AdaHessian", "CIFAR-10 ResNet20 Δ"] == "+0.14"  # 92.2667 - 92.13
    assert md.loc["AdamW", "CIFAR-10 ResNet20"] == "92.00 ± 0.14 (n=2) [+1 diverged]"
    assert md.loc["Adam", "CIFAR-10 ResNet20"] == "1 failed (of 1)"
    assert md.loc["SGD", "ImageNet ResNet18"] == "missing"
    assert md.loc["SGD", "ImageNet ResNet18 paper"] == "70.03"
    # AdaHessian vs best baseline: AdamW has the best mean (92.0) but only 2 seeds -> no test
    assert "*" not in md.loc["AdaHessian", "CIFAR-10 ResNet20"]
    assert any("best baseline AdamW n = 2" in n for n in t.notes)
    d = t.data.set_index(["task", "optim"])
    assert d.loc[("cifar10_resnet20", "adahessian"), "n"] == 3  # the sweep runs (10, 20, 30) stayed out
    assert d.loc[("cifar10_resnet20", "adahessian"), "mean"] == pytest.approx(92.266667, abs=1e-6)
    assert any("Missing runs" in n and "ImageNet ResNet18 / SGD" in n for n in t.notes)
    assert any("failed: cifar10_resnet20/adam seed 0" in n and "ValueError: boom" in n for n in t.notes)


def test_significance_mark_against_best_baseline(tmp_path):
    # AdaHessian 93.0, 93.1, 93.2 (mean 93.1, std 0.1); AdamW 91.9, 92.1, 92.0 (mean 92.0, std 0.1) is the best
    # baseline (SGD 91.0, 91.2: mean 91.1). Welch: t = 1.1 / sqrt(0.01/3 + 0.01/3) = 1.1 / 0.0816497 = 13.4722,
    # df = 4 (equal variances and n) -> p = 2 * t.sf(13.4722, 4) < 0.01 -> "**".
    for s, (ah, aw) in enumerate([(93.0, 91.9), (93.1, 92.1), (93.2, 92.0)]):
        make_record(tmp_path, "cifar10_resnet20", "adahessian", s, ah)
        make_record(tmp_path, "cifar10_resnet20", "adamw", s, aw)
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 91.0)
    make_record(tmp_path, "cifar10_resnet20", "sgd", 1, 91.2)
    t = comparison_table(load_runs(tmp_path), "2", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    row = t.data.set_index(["task", "optim"]).loc[("cifar10_resnet20", "adahessian")]
    assert row["baseline"] == "adamw"
    assert row["t_stat"] == pytest.approx(13.4722, abs=1e-4)
    assert row["p_value"] == pytest.approx(2 * sps.t.sf(13.4722, 4), rel=1e-3) and row["p_value"] < 0.01
    md = t.md.set_index("Optimizer")
    assert md.loc["AdaHessian", "CIFAR-10 ResNet20"] == "93.10 ± 0.10 (n=3)**"
    assert "*" not in md.loc["AdamW", "CIFAR-10 ResNet20"]  # only AdaHessian carries the mark
    assert any("AdaHessian vs best baseline AdamW" in n and "better by 1.10" in n for n in t.notes)
    tex = t.latex()
    assert r"93.10 $\pm$ 0.10 (n=3)$^{**}$" in tex


def test_lower_is_better_picks_the_lowest_baseline(tmp_path):
    # PTB perplexity: SGD 60, 61, 62 (mean 61); AdamW 55, 56, 54 (mean 55) is the best baseline (lower);
    # AdaHessian 50, 51, 52 (mean 51, std 1): diff to paper 51.5 = -0.5
    for s in range(3):
        make_record(tmp_path, "ptb_transformer", "sgd", s, 60.0 + s)
        make_record(tmp_path, "ptb_transformer", "adamw", s, [55.0, 56.0, 54.0][s])
        make_record(tmp_path, "ptb_transformer", "adahessian", s, 50.0 + s)
    t = comparison_table(load_runs(tmp_path), "4", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    row = t.data.set_index(["task", "optim"]).loc[("ptb_transformer", "adahessian")]
    assert row["baseline"] == "adamw" and row["diff"] == pytest.approx(-0.5)
    assert row["significant"]
    md = t.md.set_index("Optimizer")
    assert md.loc["AdaHessian", "PTB"].startswith("51.0 ± 1.0 (n=3)*")
    assert md.loc["AdaHessian", "PTB paper"] == "51.5 ± 1.2"
    assert md.loc["SGD", "Wikitext-103"] == "missing"


def test_written_files_and_smoke_banner(tmp_path):
    res = tmp_path / "res"
    for s in range(2):
        make_record(res, "cifar10_resnet20", "sgd", s, 10.0 + s, scale="smoke", data_source="synthetic",
                    history=[5.0 + s, 10.0 + s])
        make_record(res, "cifar10_resnet20", "adahessian", s, 12.0 + s, scale="smoke", data_source="synthetic",
                    history=[6.0 + s, 12.0 + s])
    paths = write_comparison(res, tmp_path / "tables", tmp_path / "figures", AH_DEFAULTS)
    names = {p.name for p in paths}
    for stem in ["table2_vision", "table3_translation", "table4_lm", "fig6_dlrm"]:
        for ext in ["md", "csv", "tex"]:
            assert f"{stem}_smoke_synthetic.{ext}" in names
    assert "table2_vision.md" not in names  # no paper-scale records, no paper-scale table
    md = (tmp_path / "tables" / "table2_vision_smoke_synthetic.md").read_text()
    assert md.startswith("## SMOKE SCALE / synthetic data - NOT comparable with the published numbers: Table 2")
    assert "10.50 ± 0.71 (n=2)" in md  # SGD 10, 11: mean 10.5, std 0.7071
    tex = (tmp_path / "tables" / "table2_vision_smoke_synthetic.tex").read_text()
    assert r"10.50 $\pm$ 0.71 (n=2)" in tex and r"\caption{SMOKE SCALE" in tex
    csv = pd.read_csv(tmp_path / "tables" / "table2_vision_smoke_synthetic.csv")
    r = csv[(csv["task"] == "cifar10_resnet20") & (csv["optim"] == "sgd")].iloc[0]
    assert r["mean"] == pytest.approx(10.5) and r["std"] == pytest.approx(math.sqrt(0.5)) and r["paper_mean"] == 92.08
    fig = tmp_path / "figures" / "curves_cifar10_resnet20_smoke_synthetic.png"
    assert fig in paths and fig.stat().st_size > 10_000


def test_lr_sweep_table_with_published_and_missing(tmp_path):
    # IWSLT14, seeds 0 and 1 planned. AdamW 1x: 35.0, 35.4 (mean 35.2, std 0.282843) vs paper 35.66 -> -0.46.
    # AdamW 10x: both diverged (paper: diverged). AdaHessian 1x: 35.8 (one seed).
    for s, v in enumerate([35.0, 35.4]):
        make_record(tmp_path, "iwslt14", "adamw", s, v)
        make_record(tmp_path, "iwslt14", "adamw", s, None, status="diverged", hparams={"lr_scale": 10.0})
    make_record(tmp_path, "iwslt14", "adahessian", 0, 35.8, hparams={"block_size": 32})
    make_record(tmp_path, "iwslt14", "adahessian", 0, 99.0, hparams={"block_size": 4})  # block sweep: not here
    t, data = sweep_table(load_runs(tmp_path), "lr", task="iwslt14", scale="paper", data_source="real",
                          defaults=AH_DEFAULTS, seeds=[0, 1])
    md = t.md.set_index("Optimizer")
    assert md.loc["AdamW", "1x"] == "35.20 ± 0.28 (n=2)"
    assert md.loc["AdamW paper", "1x"] == "35.66 ± 0.11"
    assert md.loc["AdamW Δ", "1x"] == "-0.46"
    assert md.loc["AdamW", "10x"] == "2 diverged (of 2)"
    assert md.loc["AdamW paper", "10x"] == "diverged"
    assert md.loc["AdaHessian", "1x"] == "35.80 (n=1)"
    assert md.loc["AdaHessian Δ", "1x"] == "+0.01"  # 35.80 - 35.79
    assert md.loc["AdaHessian", "0.5x"] == "missing"
    # planned grid: 2 optims x 8 multipliers x 2 seeds = 32; present: AdamW 1x, 10x (both seeds), AdaHessian 1x s0
    miss = [n for n in t.notes if n.startswith("Missing runs")][0]
    assert "(27 of the planned grid" in miss and "AdaHessian 1x seed 1" in miss and "AdamW 1x seed 0" not in miss
    assert t.name == "table6_lr_iwslt14"


def test_block_sweep_table_has_adamw_reference(tmp_path):
    # AdaHessian b=1: 35.6, 35.8 (mean 35.7, std 0.141421; paper 35.67 -> +0.03); AdamW reference 35.5 (n=1)
    for s, v in enumerate([35.6, 35.8]):
        make_record(tmp_path, "iwslt14", "adahessian", s, v, hparams={"block_size": 1})
    make_record(tmp_path, "iwslt14", "adamw", 0, 35.5)
    make_record(tmp_path, "iwslt14", "adamw", 0, 20.0, hparams={"lr_scale": 4.0})  # LR sweep: not the reference
    t, _ = sweep_table(load_runs(tmp_path), "block", task="iwslt14", scale="paper", data_source="real",
                       defaults=AH_DEFAULTS)
    md = t.md.set_index("Optimizer")
    assert md.loc["AdaHessian", "b=1"] == "35.70 ± 0.14 (n=2)"
    assert md.loc["AdaHessian Δ", "b=1"] == "+0.03"
    assert md.loc["AdaHessian", "AdamW (ref.)"] == "35.50 (n=1)"
    assert md.loc["AdaHessian paper", "AdamW (ref.)"] == "35.66 ± 0.11"
    assert md.loc["AdaHessian Δ", "AdamW (ref.)"] == "-0.16"
    assert md.loc["AdaHessian", "b=128"] == "missing"


def test_hydra_defaults_come_from_conf():
    d = hydra_defaults()("cifar10_resnet20", "adahessian", "paper")
    assert d["lr_scale"] == 1.0 and d["block_size"] == 1 and d["update_each"] == 1
    assert d["hessian_batch_fraction"] == 1.0
    assert hydra_defaults()("cifar10_resnet20", "sgd", "smoke")["block_size"] is None


def test_a_seed_counts_once_per_cell(tmp_path):
    # seed 0 run twice under different experiment keys (lr_scale given as 1 and as 1.0): the later completed run
    # is the one counted. SGD cell: seed 0 -> 91.0 (later), seed 1 -> 93.0: mean 92.0, std 1.414214, n = 2.
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 50.0, key="a")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 91.0, key="b")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 1, 93.0, key="c")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 1, None, status="failed", key="d")  # completed seed 1 wins
    t = comparison_table(load_runs(tmp_path), "2", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    row = t.data.set_index(["task", "optim"]).loc[("cifar10_resnet20", "sgd")]
    assert row["n"] == 2 and row["n_total"] == 2 and row["n_failed"] == 0
    assert row["mean"] == pytest.approx(92.0) and row["std"] == pytest.approx(1.414214, abs=1e-6)
    assert any(n.startswith("2 more record(s) of a seed already counted") for n in t.notes)


# -- which runs a table may hold (contract 2: the record's deviations) -------------------------------------
def test_paper_table_holds_only_paper_recipe_runs(tmp_path):
    # seed 0 at the paper recipe (91.0); the same seed re-run later with trainer.epochs=2 (50.0) must not replace
    # it; seed 1 shortened (40.0) and seed 2 from a schema-1 record (60.0) are not the paper recipe either.
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 91.0, key="paper")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 50.0, key="short", deviations=["trainer.epochs=2"])
    make_record(tmp_path, "cifar10_resnet20", "sgd", 1, 40.0, key="short5",
                deviations=["trainer.epochs=5", "trainer.limit_train_batches=3"])
    make_record(tmp_path, "cifar10_resnet20", "sgd", 2, 60.0, key="old", deviations=None)
    runs = load_runs(tmp_path)
    t = comparison_table(runs, "2", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    assert t.name == "table2_vision" and t.title.startswith("Table 2")
    row = t.data.set_index(["task", "optim"]).loc[("cifar10_resnet20", "sgd")]
    assert row["n"] == 1 and row["mean"] == 91.0 and row["n_total"] == 1
    excl = [n for n in t.notes if n.startswith("Excluded: 3 run(s)")]
    assert excl and "trainer.epochs=2" in excl[0] and "trainer.limit_train_batches=3" in excl[0]
    assert "recipe unknown" in excl[0]
    # each of the other recipes gets its own table, whose title says what it is
    paths = write_comparison(tmp_path, tmp_path / "tables", tmp_path / "figures", AH_DEFAULTS)
    md = {p.name: p.read_text() for p in paths if p.suffix == ".md" and p.name.startswith("table2_vision")}
    assert "91.00 (n=1)" in md["table2_vision.md"]
    short = [v for v in md.values() if v.startswith("## modified recipe: trainer.epochs=2 - NOT the paper's recipe")]
    assert len(short) == 1 and "50.00 (n=1)" in short[0] and "91.00" not in short[0]
    unknown = md["table2_vision_recipe-unknown.md"]
    assert unknown.startswith("## RECIPE UNKNOWN") and "60.00 (n=1)" in unknown


def test_sweep_runs_stay_out_of_comparison_tables_and_modified_sweeps_out_of_sweep_tables(tmp_path):
    make_record(tmp_path, "iwslt14", "adamw", 0, 35.0)
    make_record(tmp_path, "iwslt14", "adamw", 0, 30.0, hparams={"lr_scale": 2.0})  # a sweep point
    make_record(tmp_path, "iwslt14", "adamw", 1, 20.0, hparams={"lr_scale": 2.0},
                deviations=["optim.betas=[0.8, 0.9]", "optim.lr_scale=2.0"])  # a sweep with other betas
    paths = write_comparison(tmp_path, tmp_path / "tables", tmp_path / "figures", AH_DEFAULTS)
    assert not [p for p in paths if "modified" in p.name]  # sweep points, plain or modified: sweep tables only
    t = comparison_table(load_runs(tmp_path), "3", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    assert any(n.startswith("2 run(s) of sweeps") for n in t.notes)
    s, _ = sweep_table(load_runs(tmp_path), "lr", task="iwslt14", scale="paper", data_source="real",
                       defaults=AH_DEFAULTS)
    md = s.md.set_index("Optimizer")
    assert md.loc["AdamW", "2x"] == "30.00 (n=1)" and md.loc["AdamW", "1x"] == "35.00 (n=1)"
    assert any(n.startswith("Excluded: 1 run(s)") and "optim.betas=[0.8, 0.9]" in n for n in s.notes)
    m, _ = sweep_table(load_runs(tmp_path), "lr", task="iwslt14", scale="paper", data_source="real",
                       defaults=AH_DEFAULTS, recipe=("optim.betas=[0.8, 0.9]",))
    assert m.md.set_index("Optimizer").loc["AdamW", "2x"] == "20.00 (n=1)"
    assert m.name.startswith("table6_lr_iwslt14_modified-") and "optim.betas=[0.8, 0.9]" in m.title


def test_failed_and_running_in_one_cell(tmp_path):
    # the state of a sweep in progress: one completed, one failed, one running (its process alive: ours), one
    # running whose process is gone (stale)
    import os
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 91.0)
    make_record(tmp_path, "cifar10_resnet20", "sgd", 1, None, status="failed", error="Traceback\nRuntimeError: x")
    make_record(tmp_path, "cifar10_resnet20", "sgd", 2, None, status="running",
                owner={"pid": os.getpid(), "host": socket.gethostname()})
    make_record(tmp_path, "cifar10_resnet20", "sgd", 3, None, status="running",
                owner={"pid": int(dead.stdout), "host": socket.gethostname()})
    make_record(tmp_path, "cifar10_resnet20", "sgd", 4, None, status="running", stale=True)
    paths = write_comparison(tmp_path, tmp_path / "tables", tmp_path / "figures", AH_DEFAULTS)
    md = next(p for p in paths if p.name == "table2_vision.md").read_text()
    assert "91.00 (n=1) [+1 failed, 1 unfinished, 2 stale]" in md
    assert "unfinished (running): cifar10_resnet20/sgd seed 2" in md
    assert "stale (recorded as running, but its process is gone; resume=true continues it): " \
           "cifar10_resnet20/sgd seed 3" in md
    assert "failed: cifar10_resnet20/sgd seed 1" in md and "RuntimeError: x" in md


def test_imagenet_reports_the_better_schedule_per_optimizer(tmp_path):
    # SGD: plateau 70.0, 70.2 (mean 70.1) vs step 69.0, 69.4 (69.2) -> plateau; AdaHessian: plateau 69.0, 69.2
    # (69.1) vs step 70.0, 70.4 (70.2) -> step. The task's default is plateau; step decay is a deviation of the
    # schedule (the axis ImageNet runs both ways), a shortened run is not.
    plateau = {"task": {"schedule": {"name": "plateau", "factor": 0.1}}}
    step = {"task": {"schedule": {"name": "multistep", "milestones": [30, 60], "gamma": 0.1}}}
    step_devs = ["task.schedule.gamma=0.1", "task.schedule.milestones=[30, 60]", "task.schedule.name=multistep"]
    for s in range(2):
        make_record(tmp_path, "imagenet_resnet18", "sgd", s, [70.0, 70.2][s], config=plateau, key=f"sp{s}")
        make_record(tmp_path, "imagenet_resnet18", "sgd", s, [69.0, 69.4][s], config=step, key=f"ss{s}",
                    deviations=step_devs)
        make_record(tmp_path, "imagenet_resnet18", "adahessian", s, [69.0, 69.2][s], config=plateau, key=f"ap{s}")
        make_record(tmp_path, "imagenet_resnet18", "adahessian", s, [70.0, 70.4][s], config=step, key=f"as{s}",
                    deviations=step_devs)
    make_record(tmp_path, "imagenet_resnet18", "sgd", 2, 10.0, config=step, key="short",
                deviations=[*step_devs, "trainer.epochs=1"])
    make_record(tmp_path, "cifar10_resnet20", "sgd", 0, 91.0)  # a task run one way: no tag
    t = comparison_table(load_runs(tmp_path), "2", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    d = t.data.set_index(["task", "optim"])
    assert d.loc[("imagenet_resnet18", "sgd"), "variant"] == "plateau"
    assert d.loc[("imagenet_resnet18", "sgd"), "mean"] == pytest.approx(70.1)
    assert d.loc[("imagenet_resnet18", "adahessian"), "variant"] == "multistep"
    assert d.loc[("imagenet_resnet18", "adahessian"), "mean"] == pytest.approx(70.2)
    md = t.md.set_index("Optimizer")
    assert md.loc["SGD", "ImageNet ResNet18"] == "70.10 ± 0.14 (n=2) (plateau)"
    assert md.loc["AdaHessian", "ImageNet ResNet18"] == "70.20 ± 0.28 (n=2) (multistep)"
    assert md.loc["SGD", "CIFAR-10 ResNet20"] == "91.00 (n=1)"
    note = [n for n in t.notes if n.startswith("ImageNet ResNet18: the better of the task.schedule")][0]
    assert "SGD: multistep 69.20 (n=2), plateau 70.10 (n=2) -> plateau" in note
    assert any(n.startswith("Excluded: 1 run(s)") and "trainer.epochs=1" in n for n in t.notes)


def test_hparam_columns_come_from_the_records(tmp_path):
    make_record(tmp_path, "cifar10_resnet20", "sophiah", 0, 90.0, hparams={"rho": 0.04, "betas": [0.9, 0.99]})
    runs = load_runs(tmp_path)
    assert runs.loc[0, "rho"] == 0.04 and "betas" not in runs.columns  # scalars only
    assert {"lr", "weight_decay", "lr_scale", "block_size"} <= set(runs.columns)


def test_table4_has_a_wikitext103_column(tmp_path):
    # published: SGD 78.5, AdamW 20.9, AdaHessian 19.9 (results/paper/results.csv); ours 20.4 -> -0.5 vs AdamW
    make_record(tmp_path, "wikitext103_transformer", "adamw", 0, 20.4)
    t = comparison_table(load_runs(tmp_path), "4", scale="paper", data_source="real", defaults=AH_DEFAULTS)
    md = t.md.set_index("Optimizer")
    assert md.loc["AdamW", "Wikitext-103"] == "20.4 (n=1)" and md.loc["AdamW", "Wikitext-103 paper"] == "20.9"
    assert md.loc["AdamW", "Wikitext-103 Δ"] == "-0.5" and md.loc["SGD", "Wikitext-103 paper"] == "78.5"
