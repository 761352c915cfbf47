"""Learning-rate schedules of the paper's recipes, built on torch's schedulers.

Config (``schedule:``): ``name`` is one of

- ``constant``
- ``multistep``: ``milestones`` (epochs), ``gamma`` -- CIFAR-10 (80, 120) and ImageNet (30, 60), x0.1
- ``plateau``: torch's ReduceLROnPlateau (``mode``, ``factor``, ``patience``, ``threshold``, ``threshold_mode``,
  ``cooldown``, ``min_lr``) -- ImageNet, after each evaluation on ``monitor`` (a validation score's name; default:
  the task's model-selection score, ``mode`` then follows whether it is higher-is-better)
- ``inverse_sqrt``: ``warmup_steps``, ``warmup_init_lr`` -- fairseq's transformer schedule (per step)
- ``cosine``: ``warmup_steps``, ``min_lr_ratio`` -- per step over the whole run
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import lr_scheduler

SCHEDULES = ("constant", "multistep", "plateau", "inverse_sqrt", "cosine")


class Schedule:
    """One object the loop calls after every step and after every evaluation, whatever the schedule."""

    def __init__(self, cfg: dict[str, Any], optimizer, total_steps: int, higher_is_better: bool):
        name = cfg.get("name", "constant")
        if name not in SCHEDULES:
            raise ValueError(f"schedule.name={name!r} is not allowed; choose one of {', '.join(SCHEDULES)}")
        self.name = name
        self.per_step = name in ("inverse_sqrt", "cosine")
        self.monitor = cfg.get("monitor") if name == "plateau" else None
        if name == "constant":
            self.sched = lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        elif name == "multistep":
            self.sched = lr_scheduler.MultiStepLR(optimizer, list(cfg["milestones"]), gamma=cfg.get("gamma", 0.1))
        elif name == "plateau":
            self.sched = lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode=cfg.get("mode") or ("max" if higher_is_better else "min"),
                factor=cfg.get("factor", 0.1),
                patience=cfg.get("patience", 5),
                threshold=cfg.get("threshold", 1e-4),
                threshold_mode=cfg.get("threshold_mode", "rel"),
                cooldown=cfg.get("cooldown", 0),
                min_lr=cfg.get("min_lr", 0.0),
            )
        elif name == "inverse_sqrt":
            warmup = int(cfg["warmup_steps"])
            init_ratio = float(cfg.get("warmup_init_lr_ratio", 0.0))

            def inv_sqrt(step: int) -> float:  # fairseq: linear warmup, then lr * sqrt(warmup / step)
                if step < warmup:
                    return init_ratio + (1.0 - init_ratio) * step / warmup
                return math.sqrt(warmup / max(step, 1))

            self.sched = lr_scheduler.LambdaLR(optimizer, inv_sqrt)
        else:  # cosine
            warmup = int(cfg.get("warmup_steps", 0))
            floor = float(cfg.get("min_lr_ratio", 0.0))
            total = max(total_steps, 1)

            def cosine(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = min(1.0, (step - warmup) / max(1, total - warmup))
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

            self.sched = lr_scheduler.LambdaLR(optimizer, cosine)

    def after_step(self) -> None:
        if self.per_step:
            self.sched.step()

    def after_epoch(self, metric: float | None) -> None:
        if self.name == "plateau":
            if metric is not None:
                self.sched.step(metric)
        elif not self.per_step:
            self.sched.step()

    def state_dict(self) -> dict[str, Any]:
        return self.sched.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sched.load_state_dict(state)
