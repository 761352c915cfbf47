"""Sweeps through the real launcher (run.py -m) at smoke scale, Table 8 timing, `make tables` and the notebooks,
on one results set built once for the module (about 2 minutes on 2 CPU cores)."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from records_factory import make_record

from scripts import sweep as S

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}

pytestmark = pytest.mark.slow


def fast(tmp: Path) -> list[str]:
    return ["trainer.epochs=2", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.batch_size=8",
            "task.eval_batch_size=32", "trainer.checkpoint=false", "trainer.progress=false", "logger.mode=disabled",
            f"paths.work_dir={tmp / 'ck'}", f"hydra.sweep.dir={tmp / 'multirun'}"]


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)


def one(folder: Path, pattern: str) -> Path:
    """The one file of a sweep (its name ends in the recipe's suffix: these runs shorten the smoke recipe)."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, [p.name for p in folder.iterdir()])
    return found[0]


def records(res: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((res / "runs").glob("*/*/*.json"))]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke results set: an LR sweep, its re-run, a block sweep, an every-N sweep with a forced failure."""
    tmp = tmp_path_factory.mktemp("smoke")
    res = tmp / "results"
    common = ["--task", "cifar10_resnet20", "--scale", "smoke", "--seeds", "0", "--results-dir", res]
    out = {"res": res, "tmp": tmp}
    out["lr"] = run_module("scripts.sweep", "lr", *common, "--values", "0.5,1", "--", *fast(tmp))
    out["recs_lr"] = records(res)
    out["table6_csv"] = one(res / "tables", "table6_lr_cifar10_resnet20_smoke_synthetic*.csv").read_text()
    out["n_after_lr"] = len(out["recs_lr"])
    out["lr_again"] = run_module("scripts.sweep", "lr", *common, "--values", "0.5,1", "--", *fast(tmp))
    out["n_after_rerun"] = len(records(res))
    out["block"] = run_module("scripts.sweep", "block", *common, "--values", "1,4", "--", *fast(tmp))
    # forced failure: N=1 gets a 1-class synthetic dataset, which the data code rejects at build time inside the
    # run; N=2 and N=3 (2 and 3 classes) must still run after it.
    # Seed 1, so that no other run of the same cell shares its seed (a seed counts once per cell).
    every = ["--task", "cifar10_resnet20", "--scale", "smoke", "--seeds", "1", "--results-dir", res]
    out["every"] = run_module("scripts.sweep", "every", *every, "--values", "1,2,3", "--",
                              *fast(tmp), "data.synthetic.num_classes=${optim.update_each}")
    return out


def test_lr_sweep_runs_as_a_multirun_and_writes_table6(smoke):
    r = smoke["lr"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "run.py -m task=cifar10_resnet20 optim=adamw,adahessian optim.lr_scale=0.5,1 " in r.stdout
    recs = smoke["recs_lr"]
    assert smoke["n_after_lr"] == 4  # 2 optimizers x 2 multipliers x 1 seed
    got = sorted((d["optim"], d["hparams"]["lr_scale"], d["status"]) for d in recs)
    assert [g[:2] for g in got] == [("adahessian", 0.5), ("adahessian", 1.0), ("adamw", 0.5), ("adamw", 1.0)]
    assert all(d["status"] in ("completed", "diverged") and d["scale"] == "smoke" for d in recs)
    tables = smoke["res"] / "tables"
    md = one(tables, "table6_lr_cifar10_resnet20_smoke_synthetic*.md").read_text()
    assert md.startswith("## SMOKE SCALE / synthetic data")
    csv = pd.read_csv(io.StringIO(smoke["table6_csv"]))
    by = {(r.optim, r.value): r for r in csv.itertuples()}
    for d in recs:  # one seed: the table's mean is that run's best_metric
        row = by[(d["optim"], d["hparams"]["lr_scale"])]
        if d["status"] == "completed":
            assert row.n == 1 and row.mean == pytest.approx(d["best_metric"])
        else:
            assert row.n_diverged == 1 and row.n == 0
    assert one(smoke["res"] / "figures", "fig_lr_cifar10_resnet20_smoke_synthetic*.png").stat().st_size > 10_000


def test_rerun_skips_completed(smoke):
    assert smoke["lr_again"].returncode == 0
    completed = sum(d["status"] == "completed" for d in smoke["recs_lr"])
    # a re-run creates records only for experiments without a completed one (diverged ones are re-tried)
    assert smoke["n_after_rerun"] == smoke["n_after_lr"] + (4 - completed)
    assert "skipping: completed record exists" in smoke["lr_again"].stdout + smoke["lr_again"].stderr


def test_force_turns_skipping_off():
    plain = S.plan(S.parse(["lr", "--task", "iwslt14"]))[0]
    forced = S.plan(S.parse(["lr", "--task", "iwslt14", "--force"]))[0]
    assert "skip_completed=true" in plain and "skip_completed=false" in forced


def test_block_sweep_with_adamw_reference(smoke):
    r = smoke["block"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "optim=adahessian optim.block_size=1,4" in r.stdout and "optim=adamw seed=0" in r.stdout
    recs = records(smoke["res"])
    assert any(d["optim"] == "adahessian" and d["hparams"].get("block_size") == 4 for d in recs)
    md = pd.read_csv(one(smoke["res"] / "tables", "table7_block_cifar10_resnet20_smoke_synthetic*.csv"))
    ref = md[md["role"] == "reference"].iloc[0]
    assert ref["optim"] == "adamw" and ref["n_total"] >= 1
    assert set(md[md["role"] == "swept"]["value"]) == {1.0, 4.0}
    assert "Every planned run has a record" in one(smoke["res"] / "tables",
                                                   "table7_block_cifar10_resnet20_smoke_synthetic*.md").read_text()
    assert one(smoke["res"] / "figures", "fig_block_cifar10_resnet20_smoke_synthetic*.png").exists()


def test_forced_failure_does_not_stop_the_sweep_but_fails_it(smoke):
    r = smoke["every"]
    # the failed run is recorded and the others ran; the sweep says so and exits non-zero
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "sweep: 1 planned runs failed" in r.stderr and "every planned run has a record" not in r.stdout
    assert "optim.hessian_warmup_steps=" in r.stdout  # App. D(f): the Hessian every step for 5 epochs first
    recs = [d for d in records(smoke["res"]) if d["config"]["data"]["synthetic"]["num_classes"] in (1, 2, 3)
            and d["hparams"].get("update_each") in (1, 2, 3)]
    by_n = {d["hparams"]["update_each"]: d for d in recs}
    assert by_n[1]["status"] == "failed" and "num_classes" in by_n[1]["error"]
    assert by_n[2]["status"] == "completed" and by_n[3]["status"] == "completed"  # ran after the failure
    md = one(smoke["res"] / "tables", "table8_every_cifar10_resnet20_smoke_synthetic*.md").read_text()
    cells = [c.strip() for c in [ln for ln in md.splitlines() if ln.startswith("| AdaHessian ")][0].split("|")[2:-1]]
    # N=1 also holds the LR sweep's default AdaHessian run (seed 0, same hparams); the failed seed-1 run is
    # counted beside it, not averaged
    assert cells[0].endswith("(n=1) [+1 failed]") and cells[1] == f"{by_n[2]['best_metric']:.2f} (n=1)"
    assert "failed: cifar10_resnet20/adahessian update_each=1 seed 1" in md


def test_speed_table8_side_by_side(smoke):
    res = smoke["res"]
    r = run_module("scripts.speed", "--task", "cifar10_resnet20", "--scale", "smoke", "--every", "1,2",
                   "--steps", "2", "--warmup", "1", "--repeats", "2", "--memory-steps", "1", "--threads", "1",
                   "--results-dir", res, "--", "trainer.batch_size=8")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    csvs = list((res / "tables").glob("table8_speed_cifar10_resnet20_smoke_synthetic_*.csv"))
    assert len(csvs) == 1
    df = pd.read_csv(csvs[0]).set_index("config")
    assert list(df.index) == ["sgd", "adam", "adahessian_n1", "adahessian_n2"]
    assert df.loc["sgd", "x_sgd"] == pytest.approx(1.0) and df.loc["adam", "x_adam"] == pytest.approx(1.0)
    for c in df.index:  # ratios are of the measured per-step times
        assert df.loc[c, "x_sgd"] == pytest.approx(df.loc[c, "step_s"] / df.loc["sgd", "step_s"])
        assert df.loc[c, "x_adam"] == pytest.approx(df.loc[c, "step_s"] / df.loc["adam", "step_s"])
        assert df.loc[c, "peak_mb"] > 0 and "tensor memory" in df.loc[c, "memory_kind"]
    # exact tensor bytes: the Hessian step's double-backward graph shows (with one step the optimizers' state is
    # allocated after the backward's peak, so SGD and Adam peak alike)
    assert df.loc["adahessian_n1", "peak_mb"] > 1.2 * df.loc["sgd", "peak_mb"]
    assert df.loc["adam", "peak_mb"] == pytest.approx(df.loc["sgd", "peak_mb"], rel=0.05)
    assert df.loc["adahessian_n1", "theory_x_sgd"] == pytest.approx(2.0)
    assert df.loc["adahessian_n2", "theory_x_sgd"] == pytest.approx(1.5)
    assert df.loc["adahessian_n1", "paper_x_sgd"] == pytest.approx(2.42)  # published Table 8, ResNet20
    assert df.loc["adahessian_n2", "paper_x_adam"] == pytest.approx(1.64)
    # a Hessian step costs more than a plain one: N=1 is slower per step than SGD
    assert df.loc["adahessian_n1", "x_sgd"] > 1.0
    assert df.loc["adahessian_n1", "hessian_step_s"] > 0 and pd.isna(df.loc["adahessian_n1", "plain_step_s"])
    # the metric column comes from the every-N records: N=1 failed, N=2 completed
    assert df.loc["adahessian_n1", "metric_n_failed"] == 1 and df.loc["adahessian_n2", "metric_n"] == 1
    md = csvs[0].with_suffix(".md").read_text()
    assert md.startswith("## SMOKE SCALE / synthetic data") and "measured on cpu" in md
    assert list((res / "figures").glob("fig8_speed_cifar10_resnet20_smoke_synthetic_*.png"))


def test_tables_and_notebooks_on_the_smoke_results(smoke):
    res = smoke["res"]
    r = run_module("scripts.tables", "--results-dir", res)
    assert r.returncode == 0, r.stderr[-3000:]
    md = (res / "tables" / "table2_vision_smoke_synthetic.md").read_text()
    assert "SMOKE SCALE" in md.splitlines()[0] and "92.08 ± 0.08" in md  # published SGD ResNet20 beside ours
    # the sweeps' runs shorten the smoke recipe: not in the smoke table, named in its notes
    assert "run(s) of sweeps" in md or "Excluded:" in md
    figs = res / "nbfigs"
    r = run_module("scripts.notebooks", "--results-dir", res, "--figures-dir", figs, "--out-dir", res / "nb")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = {p.name for p in figs.glob("*.png")}
    assert any(n.startswith("nb_table6_lr_cifar10_resnet20_smoke_synthetic") for n in names)
    assert any(n.startswith("nb_table7_block_cifar10_resnet20_smoke_synthetic") for n in names)
    assert any(n.startswith("nb_table8_speed_cifar10_resnet20") for n in names)
    assert (res / "nb" / "training_and_tables.ipynb").exists() and (res / "nb" / "robustness_and_speed.ipynb").exists()


# -- cheap checks, no training ----------------------------------------------------------------------------
def _expand(cmd: list[str]) -> list[list[str]]:
    """The jobs of a Hydra multirun command line: the cartesian product of its comma lists."""
    over = [a for a in cmd[3:] if "=" in a]
    choices = [[f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")] for a in over]
    return [list(c) for c in itertools.product(*choices)]


@pytest.mark.parametrize("kind,task", [("lr", "iwslt14"), ("block", "iwslt14"), ("lr", "cifar10_resnet20"),
                                       ("block", "cifar10_resnet20"), ("every", "cifar10_resnet20")])
def test_paper_grids_compose_as_hydra_multiruns(kind, task):
    args = S.parse([kind, "--task", task, "--seeds", "0,1", "--scale", "paper", "--launcher", "submitit_slurm"])
    cmds = S.plan(args)
    jobs = [j for c in cmds for j in _expand(c)]
    n_values = {"lr": 8, "block": 8, "every": 5}[kind]
    n_optims = {"lr": 2, "block": 1, "every": 1}[kind]
    n_ref = 1 if kind == "block" else 0
    assert len(jobs) == 2 * (n_values * n_optims + n_ref)
    jobs = [j for j in jobs if "seed=0" in j]  # composing both seeds would only repeat the same checks
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for job in jobs:
            cfg = compose("config", overrides=job)
            param = S.KINDS[kind].param
            if cfg.optim.name in args.optims:
                assert float(cfg.optim[param]) in args.values
        hcfg = compose("config", overrides=jobs[0], return_hydra_config=True)
        assert "submitit" in hcfg.hydra.launcher._target_.lower()


def test_missing_points_and_retry_commands(tmp_path):
    res = tmp_path / "res"
    args = S.parse(["lr", "--task", "cifar10_resnet20", "--seeds", "0,1", "--scale", "smoke", "--values", "1,2",
                    "--optims", "adamw", "--results-dir", str(res), "--", "trainer.epochs=1", "seed=0,1"])
    make_record(res, "cifar10_resnet20", "adamw", 0, 50.0, scale="smoke", data_source="synthetic")
    make_record(res, "cifar10_resnet20", "adamw", 1, None, status="failed", scale="smoke", data_source="synthetic",
                hparams={"lr_scale": 2.0})
    from scripts.report.defaults import hydra_defaults

    miss = S.missing_points(args, hydra_defaults())
    # planned: adamw x {1, 2} x seeds {0, 1}; recorded: (1, seed 0) completed and (2, seed 1) failed
    assert sorted(miss) == [("cifar10_resnet20", "adamw", 1.0, 1), ("cifar10_resnet20", "adamw", 2.0, 0)]
    cmd = S.single_run_cmd(args, "cifar10_resnet20", "adamw", 2.0, 0)
    assert cmd[1:] == ["run.py", "task=cifar10_resnet20", "optim=adamw", "seed=0", "trainer=smoke",
                       "data.source=synthetic", f"paths.results_dir={res}", "skip_completed=true",
                       "optim.lr_scale=2", "trainer.epochs=1"]


def test_retry_keeps_every_extra_override_commas_included(tmp_path):
    args = S.parse(["lr", "--task", "iwslt14", "--seeds", "0", "--results-dir", str(tmp_path), "--",
                    "optim.betas=[0.8,0.9]", "+optim.foo={a: 1, b: 2}", "trainer.epochs=1"])
    cmd = S.single_run_cmd(args, "iwslt14", "adamw", 0.5, 0)
    assert cmd[2:] == ["task=iwslt14", "optim=adamw", "seed=0", "trainer=paper", "data.source=real",
                       f"paths.results_dir={tmp_path}", "skip_completed=true", "optim.lr_scale=0.5",
                       "optim.betas=[0.8,0.9]", "+optim.foo={a: 1, b: 2}", "trainer.epochs=1"]
    sweeping = S.parse(["lr", "--task", "iwslt14", "--results-dir", str(tmp_path), "--", "optim.eps=1e-8,1e-6"])
    with pytest.raises(ValueError, match="'optim.eps=1e-8,1e-6' sweeps optim.eps"):
        S.single_run_cmd(sweeping, "iwslt14", "adamw", 0.5, 0)


def test_missing_points_count_only_runs_with_the_sweeps_overrides(tmp_path):
    # an interrupted sweep with other betas: a run with the default betas is not one of its points
    res = tmp_path / "res"
    args = S.parse(["lr", "--task", "iwslt14", "--seeds", "0", "--values", "1", "--optims", "adamw",
                    "--results-dir", str(res), "--", "optim.betas=[0.8,0.9]"])
    make_record(res, "iwslt14", "adamw", 0, 35.0, config={"optim": {"betas": [0.9, 0.98]}}, deviations=[])
    from scripts.report.defaults import hydra_defaults

    assert S.missing_points(args, hydra_defaults()) == [("iwslt14", "adamw", 1.0, 0)]
    make_record(res, "iwslt14", "adamw", 0, 34.0, config={"optim": {"betas": [0.8, 0.9]}},
                deviations=["optim.betas=[0.8, 0.9]"])
    assert S.missing_points(args, hydra_defaults()) == []


def test_a_sweep_without_data_stops_before_the_first_run(tmp_path, monkeypatch, capsys):
    import types

    def check_data(cfg):
        raise FileNotFoundError(f"IWSLT14 not found in {cfg.data.root}; run scripts/prepare_iwslt14.sh")

    ran = []
    monkeypatch.setattr(S.subprocess, "run", lambda *a, **k: ran.append(a))
    real_import = S.importlib.import_module
    monkeypatch.setattr(S.importlib, "import_module", lambda name: types.SimpleNamespace(check_data=check_data)
                        if name.startswith("tasks.") else real_import(name))
    rc = S.main(["block", "--task", "iwslt14", "--results-dir", str(tmp_path)])
    err = capsys.readouterr()
    assert rc == 2 and ran == []
    assert err.err.strip().splitlines() == [err.err.strip()]  # one line
    assert err.err.startswith("sweep: iwslt14: IWSLT14 not found in") and "every planned run" not in err.out


def test_every_n_sweep_warms_up_for_five_epochs():
    # App. D(f): 5 epochs of steps; CIFAR-10: 50,000 images / batch 256 = 195.3 -> 196 steps per epoch -> 980
    args = S.parse(["every", "--task", "cifar10_resnet20"])
    assert S.warmup_steps(args) == 980
    # smoke, synthetic: 2048 images / batch 16 = 128 steps, capped at limit_train_batches=4 -> 5 * 4 = 20
    assert S.warmup_steps(S.parse(["every", "--task", "cifar10_resnet20", "--scale", "smoke"])) == 20
    args.warmup_steps = 980
    cmd = S.plan(args)[0]
    assert "optim.update_each=1,2,3,4,5" in cmd and "optim.hessian_warmup_steps=980" in cmd


def test_compare_table2_runs_both_imagenet_schedules():
    cmds = S.plan(S.parse(["compare", "--table", "2", "--seeds", "0"]))
    alt = [c for c in cmds if "~task.schedule" in c]
    assert len(alt) == 1 and "task=imagenet_resnet18" in alt[0]
    assert "+task.schedule={name: multistep, milestones: [30, 60], gamma: 0.1}" in alt[0]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=imagenet_resnet18", "optim=sgd",
                                           *[a for a in alt[0] if a.startswith(("~", "+"))]])
    assert cfg.task.schedule.name == "multistep" and list(cfg.task.schedule.milestones) == [30, 60]


def test_speed_metric_comes_from_the_every_n_runs():
    from scripts.speed import metric_recipe

    def frame(devs):
        return pd.DataFrame({"task": "t", "scale": "smoke", "data_source": "synthetic", "deviations": devs})

    # schema-1 records: unknown; the profile's own every-N runs win over a shortened sweep's
    assert metric_recipe(frame([None, None]), "t", "smoke", "synthetic") is None
    assert metric_recipe(frame([("optim.update_each=2",), ("optim.update_each=3", "trainer.epochs=2")]),
                         "t", "smoke", "synthetic") == ()
    # only a shortened every-N sweep (other runs shortened alike do not decide): its runs, whatever N changed
    got = metric_recipe(frame([("trainer.epochs=2",), ("optim.update_each=2", "trainer.epochs=2", "x.n=2")]),
                        "t", "smoke", "synthetic")
    assert got == frozenset({"trainer.epochs", "x.n"})
