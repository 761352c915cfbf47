"""Sweeps as Hydra multiruns of run.py, then their table and figure.

    python -m scripts.sweep lr    --task iwslt14 --seeds 0,1,2 --scale paper --launcher submitit_slurm
    python -m scripts.sweep block --task iwslt14 --seeds 0,1,2
    python -m scripts.sweep every --task cifar10_resnet20 --seeds 0,1,2      # Hessian every N (Table 8 metric)
    python -m scripts.sweep compare --table 2 --seeds 0,1,2,3,4               # the paper's optimizers, Table 2/3/4/fig6

lr: each optimizer's own base lr times 0.5, 1, 2, 3, 4, 5, 6, 10 (optim.lr_scale; the optimizers of the paper's
Table 6 unless --optims); block: AdaHessian optim.block_size 1, 2, 4, ..., 128 plus the AdamW reference at its
defaults (Table 7); every: AdaHessian optim.update_each 1..5 with the Hessian every step for the first 5 epochs
(optim.hessian_warmup_steps = 5 epochs of steps for the task's training set and batch size, App. D(f)).
compare --table 2 also runs ImageNet with its alternative schedule (Table 2 shows the better per optimizer).

Before the first run, each task's data is checked (the task family's check_data): missing data stops the sweep
with one line. Each multirun is ``python run.py -m ... skip_completed=true`` (``--force`` re-runs completed
ones), so a re-run only does what is missing or failed; a failing or diverging job is recorded and the others go
on. Afterwards the planned grid is checked against the records: the table lists the missing runs, and with a
local launcher the ones that never started (say, the process was killed) are retried one by one, with every
extra override. Anything after ``--`` is passed to run.py as extra overrides (e.g. ``-- trainer.epochs=1``);
the table of a sweep with overrides that change the recipe is titled with them.

Exit status: 0 when every planned run has a record and none failed (diverged runs are results); 1 when some
have no record or failed; 2 when the data is missing or a setting is bad (nothing ran).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from scripts.report import paper as P
from scripts.report.build import KINDS, expected_missing, in_recipe, sweep_selection, sweep_table
from scripts.report.cli import split_passthrough
from scripts.report.defaults import hydra_defaults
from scripts.report.figures import plot_sweep
from scripts.report.outputs import write_comparison
from scripts.report.records import load_runs, recipe_of

REPO = Path(__file__).resolve().parents[1]
LOCAL_LAUNCHERS = ("basic", "joblib")
# Training-set sizes of the real datasets (their standard training splits), for "5 epochs of steps" (App. D(f));
# synthetic data states its size in data.synthetic.train_size.
TRAIN_SIZES = {"cifar10": 50_000, "imagenet": 1_281_167}
WARMUP_EPOCHS = 5  # App. D(f): the Hessian every step for the first 5 epochs, then every N


class SweepError(ValueError):
    """A sweep that cannot start (missing data, a bad setting): printed as one line, exit status 2."""


def csv_list(s: str | None, cast=str) -> list | None:
    return None if s in (None, "") else [cast(x) for x in str(s).replace(" ", "").split(",") if x != ""]


def fmt_num(v: float) -> str:
    return f"{float(v):g}"


def fmt_override(kind: str, v: float) -> str:
    """A swept value as run.py gets it (the record's key hashes every number as a float, so 1 and 1.0 are one
    experiment): integers without a decimal point."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def common_overrides(args) -> list[str]:
    return [
        f"seed={','.join(str(s) for s in args.seeds)}",
        f"trainer={args.scale}",
        f"data.source={args.data_source}",
        f"paths.results_dir={args.results_dir}",
        f"skip_completed={'false' if args.force else 'true'}",
        f"launcher={args.launcher}",
        *args.extra,
    ]


def compose_config(args, task: str, optim: str):
    """The config run.py composes for one job of this sweep (sweeping and hydra.* overrides left out)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    own = ("task", "optim", "trainer", "data.source")
    over = [f"task={task}", f"optim={optim}", f"trainer={args.scale}", f"data.source={args.data_source}"]
    over += [o.input_line for o in parse_overrides(args.extra)
             if not o.is_sweep_override() and o.key_or_group not in own and not o.key_or_group.startswith("hydra")]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=over)


def check_data(args) -> None:
    """Each task's data, checked by its family's check_data (contract 3) before anything runs: SweepError."""
    for task in (args.tasks if args.kind == "compare" else [args.task]):
        cfg = compose_config(args, task, args.optims[0])
        fn = getattr(importlib.import_module(f"tasks.{cfg.task.family}"), "check_data", None)
        if fn is None:
            continue
        try:
            fn(cfg)
        except (FileNotFoundError, ValueError) as e:
            raise SweepError(f"{task}: {e}") from None


def warmup_steps(args) -> int:
    """5 epochs of optimizer steps for the task's training set and batch size (App. D(f)), or --warmup-steps."""
    if args.warmup_steps is not None:
        return args.warmup_steps
    cfg = compose_config(args, args.task, args.optims[0])
    if cfg.data.get("source") == "synthetic" and "synthetic" in cfg.data:
        n = int(cfg.data.synthetic.train_size)
    elif cfg.task.get("dataset") in TRAIN_SIZES:
        n = TRAIN_SIZES[cfg.task.dataset]
    else:
        raise SweepError(f"every: the training-set size of task {args.task} is not known here; give "
                         f"--warmup-steps (the steps of {WARMUP_EPOCHS} epochs at its batch size)")
    steps = math.ceil(n / int(cfg.trainer.batch_size))  # the loader keeps the last, smaller batch
    if cfg.trainer.get("limit_train_batches"):
        steps = min(steps, int(cfg.trainer.limit_train_batches))
    return WARMUP_EPOCHS * steps


def plan(args) -> list[list[str]]:
    """The run.py argument lists (one Hydra multirun each) for this sweep."""
    base = [sys.executable, "run.py", "-m"]
    if args.kind == "compare":
        cmds = [[*base, f"task={','.join(args.tasks)}", f"optim={','.join(args.optims)}", *common_overrides(args)]]
        for task in args.tasks:  # the other side of a setting the paper ran both ways (ImageNet: the schedule)
            if task in P.ALTERNATIVES:
                cmds.append([*base, f"task={task}", f"optim={','.join(args.optims)}",
                             *P.ALTERNATIVES[task]["overrides"], *common_overrides(args)])
        return cmds
    kind = KINDS[args.kind]
    warm = [f"optim.hessian_warmup_steps={args.warmup_steps}"] if args.kind == "every" else []
    cmds = [[*base, f"task={args.task}", f"optim={','.join(args.optims)}",
             f"optim.{kind.param}={','.join(fmt_override(args.kind, v) for v in args.values)}", *warm,
             *common_overrides(args)]]
    if args.reference:
        cmds.append([*base, f"task={args.task}", f"optim={','.join(args.reference)}", *common_overrides(args)])
    return cmds


def parse_overrides(extra: list[str]) -> list:
    """The ``--`` overrides as Hydra parses them (a list value such as ``optim.betas=[0.8,0.9]`` is one value;
    ``seed=0,1`` is a sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(extra))


def single_run_cmd(args, task: str, optim: str, value, seed: int) -> list[str]:
    """One planned point as a plain (non-multirun) run.py call: the retry of a job that never started.

    Every extra override is passed on verbatim (commas included), except those naming a key this command sets
    itself for the point. An extra that sweeps another key has no single value for the point: ValueError."""
    own = {"task": f"task={task}", "optim": f"optim={optim}", "seed": f"seed={seed}",
           "trainer": f"trainer={args.scale}", "data.source": f"data.source={args.data_source}",
           "paths.results_dir": f"paths.results_dir={args.results_dir}", "skip_completed": "skip_completed=true"}
    if value is not None and args.kind != "compare":
        param = f"optim.{KINDS[args.kind].param}"
        own[param] = f"{param}={fmt_override(args.kind, value)}"
    if args.kind == "every":
        own["optim.hessian_warmup_steps"] = f"optim.hessian_warmup_steps={args.warmup_steps}"
    extra = []
    for o in parse_overrides(args.extra):
        if o.key_or_group in own:
            continue
        if o.is_sweep_override():
            raise ValueError(f"cannot retry one point of the sweep: the extra override {o.input_line!r} sweeps "
                             f"{o.key_or_group}; re-run the sweep instead")
        extra.append(o.input_line)
    return [sys.executable, "run.py", *own.values(), *extra]


def _leaf(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b))


def matches_extra(config: dict, extra: list[str]) -> bool:
    """Whether a record's resolved config holds every extra override's value (those it can be checked on: not
    sweeping, not interpolated, naming a key the config has)."""
    for o in parse_overrides(extra):
        if o.is_sweep_override() or o.key_or_group.startswith("hydra") or "${" in o.input_line:
            continue
        got, want = _leaf(config if isinstance(config, dict) else {}, o.key_or_group), o.value()
        if isinstance(got, dict) and not isinstance(want, dict):
            continue  # a config-group choice (trainer=cpu): the record holds the group's content, not its name
        if got is not KeyError and not _same(got, want):
            return False
    return True


def sweep_runs(args):
    """The records this sweep made (or would make): its tasks at its profile, run with its extra overrides."""
    runs = load_runs(args.results_dir)
    if runs.empty:
        return runs
    tasks = args.tasks if args.kind == "compare" else [args.task]
    runs = runs[(runs["scale"] == args.scale) & (runs["data_source"] == args.data_source) & runs["task"].isin(tasks)]
    return runs[[matches_extra(c, args.extra) for c in runs["config"]]]


def sweep_recipe(args, runs) -> frozenset | None:
    """The recipe of this sweep's runs: any deviations, but only of the keys its extra overrides name (besides
    the swept axis); None when its records cannot say (schema 1)."""
    axis = () if args.kind == "compare" else KINDS[args.kind].axis
    known = [d for t, d in zip(runs["task"], runs["deviations"])
             if recipe_of(d, (*axis, *P.alternative_axes(t))) is not None]
    if len(runs) and not known:
        return None
    return frozenset(o.key_or_group.lstrip("+~") for o in parse_overrides(args.extra)
                     if not o.key_or_group.startswith("hydra"))


def n_variants(args, task: str) -> int:
    """How many variants of a (task, optimizer, seed) the compare sweep runs: 2 where the paper ran a setting both
    ways and the task's default is not already the alternative, else 1."""
    alt = P.ALTERNATIVES.get(task)
    if alt is None:
        return 1
    from omegaconf import OmegaConf

    default = alt["label"](OmegaConf.to_container(compose_config(args, task, args.optims[0]), resolve=True))
    return 1 if default == alt["other"] else 2


def missing_points(args, defaults) -> list[tuple]:
    """(task, optim, value, seed) of the planned grid without any record of this sweep's recipe."""
    runs = sweep_runs(args)
    recipe = sweep_recipe(args, runs)
    if args.kind == "compare":
        have = Counter()
        for task, grp in runs.groupby("task") if len(runs) else []:
            sel = in_recipe(grp, recipe, defaults, axis=P.alternative_axes(task))
            label = P.ALTERNATIVES[task]["label"] if task in P.ALTERNATIVES else (lambda c: "")
            for o, s, c in {(o, int(s), label(c)) for o, s, c in zip(sel["optim"], sel["seed"], sel["config"])
                            if s is not None}:
                have[(task, o, s)] += 1
        need = {t: n_variants(args, t) for t in args.tasks}  # ImageNet: both schedules
        return [(t, o, None, s) for t in args.tasks for o in args.optims for s in args.seeds
                if have[(t, o, s)] < need[t]]
    kind = KINDS[args.kind]
    if runs.empty:
        sel = runs.assign(value=[])
    else:
        sel = sweep_selection(runs, kind, task=args.task, scale=args.scale, data_source=args.data_source,
                              defaults=defaults, optims=args.optims, reference=args.reference, recipe=recipe)
    miss = expected_missing(sel, kind, optims=args.optims, values=args.values, reference=args.reference,
                            seeds=args.seeds)
    return [(args.task, o, v, s) for o, v, s in miss]


def failed_runs(args, defaults):
    """The planned points whose latest outcome is `failed` (no completed or diverged record)."""
    runs = sweep_runs(args)
    if runs.empty:
        return runs
    recipe = sweep_recipe(args, runs)
    if args.kind == "compare":
        sel = pd.concat([in_recipe(g, recipe, defaults, axis=P.alternative_axes(t)) for t, g in runs.groupby("task")])
        sel = sel[sel["optim"].isin(args.optims)]
    else:
        sel = sweep_selection(runs, KINDS[args.kind], task=args.task, scale=args.scale, data_source=args.data_source,
                              defaults=defaults, optims=args.optims, reference=args.reference, recipe=recipe)
        sel = sel[sel["value"].isna() | sel["value"].isin([float(v) for v in args.values])]
    return sel[sel["status"] == "failed"]


def report(args, defaults) -> list[Path]:
    """Write the sweep's table (md/csv/tex) and figure; returns the paths."""
    if args.kind == "compare":
        return write_comparison(args.results_dir, args.tables_dir, args.figures_dir, defaults, scale=args.scale,
                                data_source=args.data_source, runs=load_runs(args.results_dir))
    runs = sweep_runs(args)
    recipe = sweep_recipe(args, runs)
    kind = KINDS[args.kind]
    table, data = sweep_table(load_runs(args.results_dir), kind, task=args.task, scale=args.scale,
                              data_source=args.data_source, defaults=defaults, optims=args.optims,
                              values=args.values, reference=args.reference, seeds=args.seeds, recipe=recipe)
    paths = table.write(args.tables_dir)
    info = P.task_info(args.task)
    fig = Path(args.figures_dir) / (f"{table.name.replace(f'table{kind.table}_', 'fig_', 1)}.png")
    paths.append(plot_sweep(data, param_label=kind.value_label, title=table.title, path=fig,
                            ylabel=info["metric"] or "metric", logx=kind.kind != "every",
                            base=2 if kind.kind == "block" else 10, higher_is_better=info["higher_is_better"]))
    return paths


def parse(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, extra = split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=[*KINDS, "compare"])
    ap.add_argument("--task", default=None, help="lr/block: iwslt14 (the paper's); every: cifar10_resnet20")
    ap.add_argument("--table", default=None, help="compare: 2, 3, 4 or fig6")
    ap.add_argument("--tasks", default=None, help="compare: comma list (default: the table's configured tasks)")
    ap.add_argument("--seeds", default="0,1,2", help="comma list")
    ap.add_argument("--scale", default="paper", help="trainer profile: smoke | paper")
    ap.add_argument("--data-source", default=None, help="real | synthetic (default: synthetic for smoke)")
    ap.add_argument("--launcher", default="basic", help="basic | joblib | submitit_slurm")
    ap.add_argument("--optims", default=None, help="comma list of the swept optimizers")
    ap.add_argument("--values", default=None, help="comma list of the swept values (default: the paper's)")
    ap.add_argument("--reference", default=None, help="block: reference optimizers (default adamw; 'none')")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--tables-dir", default=None, help="default: <results-dir>/tables")
    ap.add_argument("--figures-dir", default=None, help="default: <results-dir>/figures")
    ap.add_argument("--force", action="store_true", help="re-run completed runs too (skip_completed=false)")
    ap.add_argument("--report-only", action="store_true", help="no runs: only the table and figure from records")
    ap.add_argument("--no-retry", action="store_true", help="do not retry never-started runs one by one")
    ap.add_argument("--dry-run", action="store_true", help="print the run.py commands and exit")
    ap.add_argument("--warmup-steps", type=int, default=None,
                    help=f"every: Hessian every step for this many steps first (default: {WARMUP_EPOCHS} epochs)")
    args = ap.parse_args(argv)
    args.extra = extra
    # run.py runs in the repository root; records are read back from here: one absolute path for both
    args.results_dir = str(Path(args.results_dir).resolve())
    args.seeds = csv_list(args.seeds, int)
    args.data_source = args.data_source or ("real" if args.scale == "paper" else "synthetic")
    args.tables_dir = args.tables_dir or str(Path(args.results_dir) / "tables")
    args.figures_dir = args.figures_dir or str(Path(args.results_dir) / "figures")
    if args.kind == "compare":
        if not args.table and not args.tasks:
            ap.error("compare needs --table or --tasks")
        configured = {p.stem for p in (REPO / "conf" / "task").glob("*.yaml")}
        args.tasks = csv_list(args.tasks) or [t for t in P.tasks_of_table(args.table) if t in configured]
        if not args.tasks:  # e.g. the demo asking for Table 4 before conf/task/ptb.yaml exists
            print(f"sweep: no task of table {args.table} is configured in conf/task/; nothing to run")
            raise SystemExit(0)
        if not args.optims:
            pub = P.published_results()
            args.optims = sorted(set(pub[pub["task"].isin(args.tasks)]["optim"]), key=P.optim_sort_key)
        else:
            args.optims = csv_list(args.optims)
        args.reference = []
        return args
    kind = KINDS[args.kind]
    if not args.task:
        ap.error(f"{args.kind} needs --task")
    d_optims, d_ref = kind.optimizers()
    args.optims = csv_list(args.optims) or list(d_optims)
    args.values = csv_list(args.values, float) or [float(v) for v in kind.values]
    if args.reference is None:
        args.reference = [o for o in d_ref if o not in args.optims]
    else:
        args.reference = [] if args.reference == "none" else csv_list(args.reference)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    defaults = hydra_defaults()
    try:
        if args.kind == "every":
            args.warmup_steps = warmup_steps(args)
        cmds = plan(args)
        if args.dry_run:
            for c in cmds:
                print(shlex.join(c))
            return 0
        if not args.report_only and args.data_source == "real":
            check_data(args)
    except SweepError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return 2
    if not args.report_only:
        rcs = []
        for i, c in enumerate(cmds, 1):
            print(f"+ [{i}/{len(cmds)}]", shlex.join(c), flush=True)
            rcs.append(subprocess.run(c, cwd=REPO).returncode)
        miss = missing_points(args, defaults)
        if miss and not args.no_retry and args.launcher in LOCAL_LAUNCHERS and any(rcs):
            print(f"sweep: {len(miss)} planned runs have no record after the multirun (exit codes {rcs}); "
                  "retrying them one by one", flush=True)
            for task, optim, value, seed in miss:
                try:
                    c = single_run_cmd(args, task, optim, value, seed)
                except ValueError as e:
                    print(f"sweep: {e}", file=sys.stderr)
                    break
                print("+", shlex.join(c), flush=True)
                subprocess.run(c, cwd=REPO)
    for p in report(args, defaults):
        print(p)
    rc = 0
    miss = missing_points(args, defaults)
    if miss:
        print(f"sweep: {len(miss)} planned runs have no record:", file=sys.stderr)
        for task, optim, value, seed in miss:
            v = "" if value is None else f" {KINDS[args.kind].param}={fmt_num(value)}"
            print(f"  {task} {optim}{v} seed={seed}", file=sys.stderr)
        rc = 1
    failed = failed_runs(args, defaults)
    if len(failed):
        print(f"sweep: {len(failed)} planned runs failed (see the table's notes):", file=sys.stderr)
        for r in failed.itertuples():
            err = (r.error if isinstance(r.error, str) else "").strip().splitlines()
            print(f"  {r.task} {r.optim} seed={r.seed} (run {r.run_id}){': ' + err[-1][:160] if err else ''}",
                  file=sys.stderr)
        rc = 1
    if rc == 0:
        print("sweep: every planned run has a record, none failed")
    return rc


if __name__ == "__main__":
    sys.exit(main())
