"""Sweeps as Hydra multiruns of run.py, then their table and figure.

    python -m scripts.sweep lr    --task iwslt14 --seeds 0,1,2 --scale paper --launcher submitit_slurm
    python -m scripts.sweep block --task iwslt14 --seeds 0,1,2
    python -m scripts.sweep every --task cifar10_resnet20 --seeds 0,1,2      # Hessian every N (Table 8 metric)
    python -m scripts.sweep compare --table 2 --seeds 0,1,2,3,4               # the paper's optimizers, Table 2/3/4/fig6

lr: each optimizer's own base lr times 0.5, 1, 2, 3, 4, 5, 6, 10 (optim.lr_scale; AdamW and AdaHessian unless
--optims); block: AdaHessian optim.block_size 1, 2, 4, ..., 128 plus AdamW at its defaults; every: AdaHessian
optim.update_each 1..5. Each runs ``python run.py -m ... skip_completed=true`` (``--force`` re-runs completed
ones), so a re-run only does what is missing or failed; a failing or diverging job is recorded and the others go
on. Afterwards the planned grid is checked against the records: the table lists the missing runs, and with a
local launcher the ones that never started (say, the process was killed) are retried one by one. Anything after
``--`` is passed to run.py as extra overrides (e.g. ``-- trainer.epochs=1``).

Exit status: 0 when every planned run has a record (completed, diverged or failed: all shown in the table),
1 when some have none.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from scripts.report import paper as P  # noqa: E402
from scripts.report.build import KINDS, expected_missing, sweep_selection, sweep_table  # noqa: E402
from scripts.report.cli import split_passthrough  # noqa: E402
from scripts.report.defaults import at_defaults, hydra_defaults  # noqa: E402
from scripts.report.figures import plot_sweep  # noqa: E402
from scripts.report.outputs import write_comparison  # noqa: E402
from scripts.report.records import load_runs, profile_suffix  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOCAL_LAUNCHERS = ("basic", "joblib")


def csv_list(s: str | None, cast=str) -> list | None:
    return None if s in (None, "") else [cast(x) for x in str(s).replace(" ", "").split(",") if x != ""]


def fmt_num(v: float) -> str:
    return f"{float(v):g}"


def fmt_override(kind: str, v: float) -> str:
    """A swept value as run.py gets it: lr_scale as a float (1.0, like the config's default, so that the
    experiment key of the 1x run equals the default run's), block size and N as integers."""
    if KINDS[kind].param == "lr_scale":
        return repr(float(v))
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


def plan(args) -> list[list[str]]:
    """The run.py argument lists (one Hydra multirun each) for this sweep."""
    base = [sys.executable, "run.py", "-m"]
    if args.kind == "compare":
        return [[*base, f"task={','.join(args.tasks)}", f"optim={','.join(args.optims)}", *common_overrides(args)]]
    kind = KINDS[args.kind]
    cmds = [[*base, f"task={args.task}", f"optim={','.join(args.optims)}",
             f"optim.{kind.param}={','.join(fmt_override(args.kind, v) for v in args.values)}",
             *common_overrides(args)]]
    if args.reference:
        cmds.append([*base, f"task={args.task}", f"optim={','.join(args.reference)}", *common_overrides(args)])
    return cmds


def single_run_cmd(args, task: str, optim: str, value, seed: int) -> list[str]:
    """One planned point as a plain (non-multirun) run.py call: the retry of a job that never started."""
    over = [f"task={task}", f"optim={optim}", f"seed={seed}", f"trainer={args.scale}",
            f"data.source={args.data_source}", f"paths.results_dir={args.results_dir}", "skip_completed=true",
            *[e for e in args.extra if "," not in e]]
    if value is not None and args.kind != "compare":
        over.append(f"optim.{KINDS[args.kind].param}={fmt_override(args.kind, value)}")
    return [sys.executable, "run.py", *over]


def missing_points(args, defaults) -> list[tuple]:
    """(task, optim, value, seed) of the planned grid without any record."""
    runs = load_runs(args.results_dir)
    if args.kind == "compare":
        have = set()
        if len(runs):
            sel = runs[(runs["scale"] == args.scale) & (runs["data_source"] == args.data_source)]
            sel = at_defaults(sel, defaults)
            have = {(t, o, int(s)) for t, o, s in zip(sel["task"], sel["optim"], sel["seed"]) if s is not None}
        return [(t, o, None, s) for t in args.tasks for o in args.optims for s in args.seeds if (t, o, s) not in have]
    kind = KINDS[args.kind]
    if runs.empty:
        sel = runs.assign(value=[])
    else:
        sel = sweep_selection(runs, kind, task=args.task, scale=args.scale, data_source=args.data_source,
                              defaults=defaults, optims=args.optims, reference=args.reference)
    miss = expected_missing(sel, kind, optims=args.optims, values=args.values, reference=args.reference,
                            seeds=args.seeds)
    return [(args.task, o, v, s) for o, v, s in miss]


def report(args, defaults) -> list[Path]:
    """Write the sweep's table (md/csv/tex) and figure; returns the paths."""
    runs = load_runs(args.results_dir)
    if args.kind == "compare":
        return write_comparison(args.results_dir, args.tables_dir, args.figures_dir, defaults, scale=args.scale,
                                data_source=args.data_source, runs=runs)
    kind = KINDS[args.kind]
    table, data = sweep_table(runs, kind, task=args.task, scale=args.scale, data_source=args.data_source,
                              defaults=defaults, optims=args.optims, values=args.values, reference=args.reference,
                              seeds=args.seeds)
    paths = table.write(args.tables_dir)
    info = P.task_info(args.task)
    fig = Path(args.figures_dir) / f"fig_{kind.kind}_{args.task}{profile_suffix(args.scale, args.data_source)}.png"
    paths.append(plot_sweep(data, param_label=kind.value_label, title=table.title, path=fig,
                            ylabel=info["metric"] or "metric", logx=kind.kind != "every",
                            base=2 if kind.kind == "block" else 10))
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
    args.optims = csv_list(args.optims) or list(kind.optims)
    args.values = csv_list(args.values, float) or [float(v) for v in kind.values]
    if args.reference is None:
        args.reference = [o for o in kind.reference if o not in args.optims]
    else:
        args.reference = [] if args.reference == "none" else csv_list(args.reference)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    defaults = hydra_defaults()
    cmds = plan(args)
    if args.dry_run:
        for c in cmds:
            print(shlex.join(c))
        return 0
    if not args.report_only:
        rcs = []
        for c in cmds:
            print("+", shlex.join(c), flush=True)
            rcs.append(subprocess.run(c, cwd=REPO).returncode)
        miss = missing_points(args, defaults)
        if miss and not args.no_retry and args.launcher in LOCAL_LAUNCHERS and any(rcs):
            print(f"sweep: {len(miss)} planned runs have no record after the multirun (exit codes {rcs}); "
                  "retrying them one by one", flush=True)
            for task, optim, value, seed in miss:
                c = single_run_cmd(args, task, optim, value, seed)
                print("+", shlex.join(c), flush=True)
                subprocess.run(c, cwd=REPO)
    for p in report(args, defaults):
        print(p)
    miss = missing_points(args, defaults)
    if miss:
        print(f"sweep: {len(miss)} planned runs have no record:", file=sys.stderr)
        for task, optim, value, seed in miss:
            v = "" if value is None else f" {KINDS[args.kind].param}={fmt_num(value)}"
            print(f"  {task} {optim}{v} seed={seed}", file=sys.stderr)
        return 1
    print("sweep: every planned run has a record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
