"""Table 8 on this device: AdaHessian with the Hessian every N = 1..5 steps, step time relative to SGD and Adam
measured side by side in one process, peak memory, and the metric reached at each N (from run records).

    python -m scripts.speed --task cifar10_resnet20 --scale paper            # the paper's batch size
    python -m scripts.speed --task cifar10_resnet20 --scale smoke --steps 10 # seconds on CPU

Timing: the task's model and data are built by the trainer's own code (``tasks.<family>.build(cfg)`` ->
``engine.task_api.TorchTask``) and each step is ``engine.trainer.train_step`` (which draws the Hessian only on the
steps the optimizer needs it). SGD, Adam and AdaHessian(N) each get an identically initialised model and the
same fixed batches; after ``--warmup`` untimed steps each, they take turns (``--repeats`` rounds of a block of
whole N-cycles each), so drift of the machine hits all alike. Reported: mean time per step over the blocks
(median over rounds) and its ratio to SGD and to Adam.

Peak memory: each configuration once more in its own fresh process (building the task, a few steps): on CUDA
``torch.cuda.max_memory_allocated``; on CPU the same quantity from torch.profiler's allocation events
(``scripts/memory_peak.py``), not the resident set with its Python/torch baseline.

Metric at each N: the records of runs with ``optim.update_each=N`` at this scale (``make sweep-every``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import math
import multiprocessing as mp
import re
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from scripts.memory_peak import cpu_peak_mb
from scripts.report import paper as P
from scripts.report.build import KINDS, sweep_table
from scripts.report.cli import split_passthrough
from scripts.report.defaults import hydra_defaults
from scripts.report.figures import plot_speed
from scripts.report.records import load_runs, on_axis, profile_banner, profile_suffix, recipe_of
from scripts.report.render import DASH, Table, finite, fmt_diff, fmt_mean_std

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def config_overrides(task: str, scale: str, data_source: str, every: list[int],
                     extra: list[str]) -> dict[str, list[str]]:
    base = [f"task={task}", f"trainer={scale}", f"data.source={data_source}", "logger.mode=disabled",
            "trainer.progress=false", *extra]
    out = {"sgd": [*base, "optim=sgd"], "adam": [*base, "optim=adam"]}
    for n in every:
        # no warm-up phase of Hessian-every-step here: the cost of N is what is measured
        out[f"adahessian_n{n}"] = [*base, "optim=adahessian", f"optim.update_each={n}", "optim.hessian_warmup_steps=0"]
    return out


def compose_all(overrides: dict[str, list[str]]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return {k: compose("config", overrides=v) for k, v in overrides.items()}


def build_task(cfg):
    from engine.launch import resolve_cpu_auto
    from engine.trainer import seed_everything

    resolve_cpu_auto(cfg)  # trainer.num_workers=auto -> a number (this script sets its own thread count)

    family = importlib.import_module(f"tasks.{cfg.task.family}")
    if not hasattr(family, "build"):
        raise SystemExit(f"tasks.{cfg.task.family} has no build(cfg): speed needs a torch-native task")
    seed_everything(cfg.seed)  # identical initialisation for every optimizer
    return family.build(cfg)


def fixed_batches(task, n: int, device):
    from engine.trainer import to_device

    out = []
    while len(out) < n:
        for b in task.train_loader:
            out.append(to_device(b, device))
            if len(out) == n:
                break
    return out


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Contender:
    """One optimizer configuration: its own model copy and optimizer, stepping on the shared batches."""

    def __init__(self, name: str, cfg, task, device):
        import dataclasses

        from engine.trainer import build_optimizer

        self.name, self.cfg, self.device = name, cfg, device
        self.every = int(cfg.optim.get("update_each", 1) or 1) if cfg.optim.name == "adahessian" else 1
        if task.param_sets is not None:  # parameter sets point into the model: build the task anew
            self.task = build_task(cfg)
            self.task.model.to(device)
        else:
            self.task = dataclasses.replace(task, model=copy.deepcopy(task.model).to(device))
        self.task.model.train()
        self.optimizer = build_optimizer(cfg, self.task)
        self.i = 0
        self.blocks: list[float] = []
        self.hessian_s: list[float] = []
        self.plain_s: list[float] = []

    def step(self, batch) -> float:
        from engine.trainer import train_step

        tc = self.cfg.trainer
        _sync(self.device)
        t0 = time.perf_counter()
        _, hessian = train_step(self.task, self.optimizer, batch, precision=tc.precision, device=self.device,
                                grad_clip=tc.grad_clip, hessian_batch_fraction=tc.hessian_batch_fraction)
        _sync(self.device)
        dt = time.perf_counter() - t0
        (self.hessian_s if hessian else self.plain_s).append(dt)
        return dt

    def run(self, batches, n_steps: int, timed: bool = True) -> None:
        total = 0.0
        for _ in range(n_steps):
            total += self.step(batches[self.i % len(batches)])
            self.i += 1
        if timed:
            self.blocks.append(total / n_steps)


def measure_time(cfgs: dict, steps: int, warmup: int, repeats: int) -> tuple[pd.DataFrame, str]:
    from engine.provenance import device_name
    from engine.trainer import resolve_device

    first = next(iter(cfgs.values()))
    device = resolve_device(first.trainer.device)
    task = build_task(first)
    batches = fixed_batches(task, max(steps, 8), device)
    contenders = [Contender(k, c, task, device) for k, c in cfgs.items()]
    t0 = time.perf_counter()
    for c in contenders:
        c.hessian_s.clear()
        c.run(batches, warmup, timed=False)
        c.hessian_s.clear()
        c.plain_s.clear()
    # Long work says where it is: one line per round, with the time so far and an estimate of what is left.
    warm_s = time.perf_counter() - t0
    print(f"speed: warm-up done in {warm_s:.0f} s; {repeats} timed rounds of {len(contenders)} configurations",
          flush=True)
    for r in range(repeats):
        t = time.perf_counter()
        for c in contenders:
            c.run(batches, c.every * math.ceil(steps / c.every))  # whole N-cycles: the same share of Hessian steps
        took = time.perf_counter() - t
        print(f"speed: round {r + 1}/{repeats} took {took:.0f} s (about {took * (repeats - r - 1):.0f} s left)",
              flush=True)
    rows = []
    for c in contenders:
        every_n = c.every if c.cfg.optim.name == "adahessian" else None
        rows.append({"config": c.name, "optim": c.cfg.optim.name, "every_n": every_n,
                     "step_s": statistics.median(c.blocks), "step_s_rounds": c.blocks,
                     "hessian_step_s": statistics.median(c.hessian_s) if c.hessian_s else None,
                     "plain_step_s": statistics.median(c.plain_s) if c.plain_s else None,
                     "batch_size": task.batch_size_of(batches[0])})
    df = pd.DataFrame(rows)
    sgd = df.loc[df["config"] == "sgd", "step_s"].iloc[0]
    adam = df.loc[df["config"] == "adam", "step_s"].iloc[0]
    df["x_sgd"] = df["step_s"] / sgd
    df["x_adam"] = df["step_s"] / adam
    return df, device_name(device)


def _memory_child(overrides: list[str], steps: int, threads: int, conn) -> None:
    """In a fresh process: build the task and optimizer, take a few steps, send back the peak memory (MB)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        cfg = compose_all({"x": overrides})["x"]
        from engine.trainer import resolve_device

        device = resolve_device(cfg.trainer.device)

        def build_and_step():
            task = build_task(cfg)
            batches = fixed_batches(task, 2, device)
            c = Contender("x", cfg, task, device)
            del task
            c.run(batches, max(steps, c.every), timed=False)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            build_and_step()
            conn.send({"peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                       "memory_kind": "cuda max_memory_allocated"})
        else:
            # Tensor bytes, as on CUDA (model, batches, activations, graphs, optimizer state), not the process's
            # resident set, which carries the Python/torch baseline and allocator slack (scripts/memory_peak.py).
            conn.send({"peak_mb": cpu_peak_mb(build_and_step),
                       "memory_kind": "cpu tensor memory (torch.profiler allocation events)"})
    except BaseException as e:  # noqa: BLE001 - report, do not hang the parent
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def measure_memory(overrides: dict[str, list[str]], steps: int, threads: int = 0) -> pd.DataFrame:
    ctx = mp.get_context("spawn")
    rows = []
    for i, (name, over) in enumerate(overrides.items(), 1):
        print(f"speed: memory {i}/{len(overrides)}: {name} (a fresh process)", flush=True)
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_memory_child, args=(over, steps, threads, child))
        p.start()
        child.close()
        res = parent.recv() if parent.poll(900) else {"error": "timeout"}
        p.join()
        if "error" in res:
            print(f"speed: memory of {name} not measured: {res['error']}", file=sys.stderr)
        rows.append({"config": name, **res})
    return pd.DataFrame(rows)


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower().split(" (")[0]).strip("-")


def speed_table(df: pd.DataFrame, metric: pd.DataFrame | None, *, task: str, scale: str, data_source: str,
                device: str, steps: int, repeats: int, paper_dir=None) -> Table:
    info = P.task_info(task, paper_dir)
    d = info["decimals"]
    pub = P.published_frequency(paper_dir)
    pub = pub[pub["task"] == task].set_index("every_n_steps")
    has_pub = len(pub) > 0
    data = df.copy()
    data["theory_x_sgd"] = [1 + 1 / n if finite(n) else math.nan for n in data["every_n"]]
    for col, src in [("paper_x_sgd", "measured_x_sgd"), ("paper_x_adam", "measured_x_adam"),
                     ("paper_metric_mean", "top1_acc_mean"), ("paper_metric_std", "top1_acc_std")]:
        data[col] = [pub.loc[int(n), src] if finite(n) and int(n) in pub.index else math.nan for n in data["every_n"]]
    m = metric.set_index("value") if metric is not None and len(metric) else None
    for col in ["n", "mean", "std", "n_diverged", "n_failed"]:
        data[f"metric_{col}"] = [m.loc[float(n), col] if m is not None and finite(n) and float(n) in m.index else
                                 (0 if col.startswith("n") else math.nan) for n in data["every_n"]]
    data["metric_diff"] = data["metric_mean"] - data["paper_metric_mean"]
    data["device"], data["task"], data["scale"], data["data_source"] = device, task, scale, data_source

    def cells(f: str) -> pd.DataFrame:
        out = []
        for r in data.itertuples():
            name = P.optim_label(r.optim) + (f", N={int(r.every_n)}" if finite(r.every_n) else "")
            row = {"Optimizer": name,
                   "theory x SGD": f"{r.theory_x_sgd:.2f}" if finite(r.theory_x_sgd) else DASH[f],
                   "x SGD": f"{r.x_sgd:.2f}", "x Adam": f"{r.x_adam:.2f}",
                   "step (ms)": f"{1000 * r.step_s:.1f}",
                   "peak memory (MB)": f"{r.peak_mb:.0f}" if finite(getattr(r, "peak_mb", math.nan)) else DASH[f]}
            if has_pub:
                row["x SGD paper"] = f"{r.paper_x_sgd:.2f}" if finite(r.paper_x_sgd) else DASH[f]
                row["x Adam paper"] = f"{r.paper_x_adam:.2f}" if finite(r.paper_x_adam) else DASH[f]
            mname = info["metric"] or "metric"
            if r.metric_n or r.metric_n_diverged or r.metric_n_failed:
                s = f"{fmt_mean_std(r.metric_mean, r.metric_std, d, f)} (n={int(r.metric_n)})" if r.metric_n else ""
                counts = [(r.metric_n_diverged, "diverged"), (r.metric_n_failed, "failed")]
                bad = ", ".join(f"{int(k)} {w}" for k, w in counts if k)
                row[mname] = (s + (f" [+{bad}]" if bad and s else bad)).strip()
            else:
                row[mname] = "missing" if finite(r.every_n) else DASH[f]
            if has_pub:
                row[f"{mname} paper"] = fmt_mean_std(r.paper_metric_mean, r.paper_metric_std, d, f)
                row[f"{mname} Δ"] = fmt_diff(r.metric_diff, d, f)
            out.append(row)
        cols = ["Optimizer", "theory x SGD", "x SGD", *(["x SGD paper"] if has_pub else []), "x Adam",
                *(["x Adam paper"] if has_pub else []), "step (ms)", "peak memory (MB)"]
        mname = info["metric"] or "metric"
        cols += [mname, *([f"{mname} paper", f"{mname} Δ"] if has_pub else [])]
        return pd.DataFrame(out)[cols]

    banner = profile_banner(scale, data_source)
    base = f"Table 8: Hessian every N steps, {info['label']}, measured on {device}"
    title = f"{banner}: {base}" if banner else base
    bs = int(data["batch_size"].iloc[0])
    kind = data["memory_kind"].dropna().iloc[0] if "memory_kind" in data and data["memory_kind"].notna().any() else None
    notes = [
        f"Step time: mean over blocks of whole N-cycles of engine.trainer.train_step ({steps}+ steps per block, "
        f"median of {repeats} interleaved rounds), batch size {bs}; x SGD and x Adam are ratios of these times "
        "measured side by side in one process. theory: 1 + 1/N times SGD (one extra backward every N steps).",
        f"{info['metric'] or 'metric'}: best_metric of runs with optim.update_each=N at this scale "
        "(mean ± std over seeds, n = completed runs); 'missing' = no run record.",
    ]
    if kind:
        notes.append(f"Peak memory: {kind}, from building the task through the steps, in a fresh process per "
                     "configuration.")
    if has_pub:
        notes.append("paper: the published Table 8 (measured on the authors' GPU); Δ = ours - paper.")
    name = f"table8_speed_{task}{profile_suffix(scale, data_source)}_{slug(device)}"
    return Table(name, title, data, cells("md"), cells("tex"), notes)


def metric_recipe(runs: pd.DataFrame, task: str, scale: str, data_source: str):
    """Which every-N runs give the metric columns: those of the profile's own recipe when there are any (recipe
    ()), else every-N runs whatever else they changed (a frozenset of those keys: a shortened sweep), else None
    (records that cannot say)."""
    axis = KINDS["every"].axis
    sel = runs[(runs["task"] == task) & (runs["scale"] == scale) & (runs["data_source"] == data_source)]
    devs = list(sel["deviations"])
    if devs and all(d is None for d in devs):
        return None
    swept = [d for d in devs if d is not None and any(on_axis(x, axis) for x in d)]
    if not swept or any(recipe_of(d, axis) == () for d in swept):
        return ()
    return frozenset(x.split("=", 1)[0] for d in swept for x in recipe_of(d, axis))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, extra = split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="cifar10_resnet20")
    ap.add_argument("--scale", default="paper", help="trainer profile (batch size, precision): smoke | paper")
    ap.add_argument("--data-source", default=None, help="real | synthetic (default: synthetic for smoke)")
    ap.add_argument("--every", default="1,2,3,4,5", help="Hessian every N steps, comma list")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block (rounded up to whole N-cycles)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per configuration first")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--memory-steps", type=int, default=3, help="steps of each fresh-process memory run; 0: skip")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--results-dir", default="results", help="run records for the metric at each N")
    ap.add_argument("--tables-dir", default=None)
    ap.add_argument("--figures-dir", default=None)
    args = ap.parse_args(argv)
    data_source = args.data_source or ("real" if args.scale == "paper" else "synthetic")
    every = [int(x) for x in args.every.split(",")]
    tables_dir = Path(args.tables_dir or Path(args.results_dir) / "tables")
    figures_dir = Path(args.figures_dir or Path(args.results_dir) / "figures")

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    overrides = config_overrides(args.task, args.scale, data_source, every, extra)
    cfgs = compose_all(overrides)
    print(f"speed: timing {', '.join(cfgs)} on {args.task} ({args.scale}, {data_source})", flush=True)
    df, device = measure_time(cfgs, args.steps, args.warmup, args.repeats)
    if args.memory_steps > 0:
        mem = measure_memory(overrides, args.memory_steps, args.threads)
        df = df.merge(mem, on="config", how="left")
    runs = load_runs(args.results_dir)
    metric, recipe = None, ()
    if len(runs):
        recipe = metric_recipe(runs, args.task, args.scale, data_source)
        _, metric = sweep_table(runs, "every", task=args.task, scale=args.scale, data_source=data_source,
                                defaults=hydra_defaults(), values=every, recipe=recipe)
        metric = metric[metric["role"] == "swept"]
    table = speed_table(df, metric, task=args.task, scale=args.scale, data_source=data_source, device=device,
                        steps=args.steps, repeats=args.repeats)
    if recipe:
        table.notes.append("The metric columns come from every-N runs that also changed "
                           f"{', '.join(sorted(recipe))} (not the {args.scale} recipe).")
    elif recipe is None:
        table.notes.append("The metric columns come from every-N records that do not say their recipe (schema 1).")
    paths = table.write(tables_dir)
    pub = P.published_frequency()
    pub = pub[pub["task"] == args.task]
    ah = table.data[table.data["optim"] == "adahessian"]
    paths.append(plot_speed(ah, title=table.title, path=figures_dir / f"{table.name.replace('table8', 'fig8')}.png",
                            metric=metric, published=pub, ylabel_metric=P.task_info(args.task)["metric"] or "metric"))
    print(table.md.to_markdown(index=False))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
