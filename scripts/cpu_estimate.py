"""How long the cpu-scale runs will take: time a few steps of each (task, optimizer) and extrapolate.

    python -m scripts.cpu_estimate --tasks cifar10_resnet20,ptb_transformer,criteo_dlrm [--steps 3] [-- data.root=...]

For each pair it composes ``trainer=cpu`` (the same config ``make cpu-results`` runs), builds the task on its data,
times ``--steps`` training steps after one untimed step and ``--eval-batches`` evaluation batches, and prints
``steps x step time + evaluations x evaluation time`` for the whole run. Times are CPU seconds of this process with
one torch thread (``time.process_time``): unlike wall time they do not grow when other jobs share the machine, and
on an idle 2-core machine a run with two threads takes about this long or less. Translation runs in fairseq's own
loop and is not timed here (docs/cpu_scale.md gives its measured estimate).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time

import torch

from engine.trainer import build_optimizer, seed_everything, train_step
from scripts.report.cli import split_passthrough

CONF_DIR = "conf"


def compose(task: str, optim: str, extra: list[str]):
    from pathlib import Path

    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(CONF_DIR).resolve()), version_base="1.3"):
        return hcompose("config", overrides=[f"task={task}", f"optim={optim}", "trainer=cpu", *extra])


def estimate(task_name: str, optim: str, extra: list[str], steps: int, eval_batches: int) -> dict:
    cfg = compose(task_name, optim, extra)
    family = importlib.import_module(f"tasks.{cfg.task.family}")
    seed_everything(0)
    task = family.build(cfg)
    optimizer = build_optimizer(cfg, task)
    batches = iter(task.train_loader)
    times = []
    for i in range(steps + 1):
        batch = next(batches)
        t0 = time.process_time()
        loss, _ = train_step(task, optimizer, batch)
        if i:  # the first step allocates and warms caches
            times.append(time.process_time() - t0)
    step_s = sum(times) / len(times)
    n_val = len(task.val_loader)
    t0 = time.process_time()
    task.evaluate(task.model, task.val_loader, torch.device("cpu"), eval_batches)
    eval_s = (time.process_time() - t0) * n_val / min(eval_batches, n_val)
    tc = cfg.trainer
    per_epoch = min(len(task.train_loader), tc.limit_train_batches or math.inf)
    total_steps = min(per_epoch * tc.epochs, tc.max_steps or math.inf)
    every = tc.get("eval_every")  # evaluations inside an epoch too (the end of an epoch is evaluated once)
    inner = sum(1 for s in range(every, int(total_steps), every) if s % per_epoch) if every else 0
    evals = math.ceil(total_steps / per_epoch) + inner
    total = total_steps * step_s + evals * eval_s
    return {"task": task_name, "optim": optim, "step_s": step_s, "steps": int(total_steps), "eval_s": eval_s,
            "evals": evals, "total_s": total, "loss": loss}


def main(argv=None) -> int:
    argv, extra = split_passthrough(list(sys.argv[1:] if argv is None else argv))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="cifar10_resnet20,ptb_transformer,criteo_dlrm")
    ap.add_argument("--optims", default=None, help="comma list (default: each task's cpu-scale optimizers)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--eval-batches", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from scripts.report import paper as P

    pub = P.published_results()
    grand = 0.0
    print(f"{'task':18} {'optim':11} {'step s':>7} {'steps':>6} {'eval s':>7} {'evals':>5} {'run min':>8}")
    for task in args.tasks.split(","):
        optims = args.optims.split(",") if args.optims else sorted(set(pub[pub["task"] == task]["optim"]))
        task_total = 0.0
        for optim in optims:
            r = estimate(task, optim, extra, args.steps, args.eval_batches)
            task_total += r["total_s"]
            print(f"{task:18} {optim:11} {r['step_s']:7.3f} {r['steps']:6d} {r['eval_s']:7.1f} {r['evals']:5d} "
                  f"{r['total_s'] / 60:8.1f}", flush=True)
        grand += task_total
        print(f"{task:18} {'(all)':11} {'':7} {'':6} {'':7} {'':5} {task_total / 60:8.1f}", flush=True)
    print(f"total: {grand / 60:.1f} min of CPU time (1 thread) for one seed of every pair above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
