"""From a composed config to a finished run record: validate, open (or resume) the run, train, close.

``run.py`` is a thin Hydra entry point around :func:`launch`.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import distributed
from .provenance import git_state, library_versions
from .record import RunRecord, experiment_key, find_completed, iter_records
from .session import Run, open_wandb, run_to_status
from .tracking import MODES
from .trainer import PRECISIONS, seed_everything

log = logging.getLogger("run")

# Config fields that do not change the experiment's outcome: excluded from its key.
_NOT_IN_KEY = ("paths", "logger", "resume", "skip_completed", "hydra")
_TRAINER_NOT_IN_KEY = ("progress", "device", "num_workers", "checkpoint", "log_every", "fast_batchnorm")
_HPARAM_KEYS = ("lr", "lr_scale", "weight_decay", "momentum", "betas", "eps", "block_size", "update_each",
                "hessian_power", "hessian_warmup_steps", "n_samples")


class ConfigError(ValueError):
    """A bad configuration value; run.py prints it as one line."""


class MirrorRecord(RunRecord):
    """A non-zero torchrun rank's view of rank 0's record: same fields, never written."""

    def save(self) -> None:
        pass


def _experiment_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in cfg.items() if k not in _NOT_IN_KEY}
    fields["trainer"] = {k: v for k, v in cfg["trainer"].items() if k not in _TRAINER_NOT_IN_KEY}
    return fields


def hparams_of(cfg: dict[str, Any]) -> dict[str, Any]:
    h = {k: cfg["optim"][k] for k in _HPARAM_KEYS if k in cfg["optim"]}
    h["hessian_batch_fraction"] = cfg["trainer"].get("hessian_batch_fraction", 1.0)
    h["precision"] = cfg["trainer"].get("precision", "fp32")
    return h


def validate(cfg: DictConfig) -> None:
    """Reject bad values before anything is written, each with one line naming it and what is allowed."""
    if cfg.logger.mode not in MODES:
        raise ConfigError(f"logger.mode={cfg.logger.mode!r} is not allowed; choose one of {', '.join(MODES)}")
    sources = ("real", "synthetic")
    if cfg.data.source not in sources:
        raise ConfigError(f"data.source={cfg.data.source!r} is not allowed; choose one of {', '.join(sources)}")
    for key in ("epochs", "batch_size"):
        value = cfg.trainer.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"trainer.{key}={value!r} is not allowed; it must be a positive integer")
    precision = cfg.trainer.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not allowed; choose one of {', '.join(PRECISIONS)}")
    frac = cfg.trainer.get("hessian_batch_fraction", 1.0)
    if not 0.0 < frac <= 1.0:
        raise ConfigError(f"trainer.hessian_batch_fraction={frac!r} is not allowed; it must be in (0, 1]")
    try:  # the optimizer validates its own arguments; try them on dummy parameters (one per named set)
        dummy = lambda: [torch.nn.Parameter(torch.zeros(2, 2))]  # noqa: E731
        sets = cfg.optim.get("per_set") or {}
        params = {**{name: dummy() for name in sets}, "_others": dummy()} if sets else dummy()
        instantiate(cfg.optim)(params)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optim={cfg.optim.name}: {e}") from None


def _resume_target(results_dir: Path, work_root: Path, key: str, resume: Any) -> RunRecord:
    """The record to continue: the given run id, or the latest unfinished run of this experiment."""
    candidates = [r for r in iter_records(results_dir)
                  if (r["run_id"] == str(resume) if resume is not True else
                      r.get("key") == key and r["status"] != "completed")]
    candidates = [r for r in candidates
                  if (work_root / r["task"] / r["optim"] / r["run_id"] / "last.pt").exists()
                  or r.get("task_family") == "translation"]
    if not candidates:
        what = f"run id {resume!r}" if resume is not True else "an unfinished run of this experiment"
        raise ConfigError(f"resume={resume!r}: found no {what} with a checkpoint under {results_dir}/runs "
                          f"and {work_root}; start without resume")
    latest = max(candidates, key=lambda r: r["started_at"])
    return RunRecord.load(latest["_path"])


def launch(cfg: DictConfig, *, multirun: bool = False) -> str:
    """Train one configuration and return its final status ("skipped" when skip_completed found it done)."""
    validate(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    key = experiment_key(_experiment_fields(container))
    results_dir = Path(cfg.paths.results_dir)
    work_root = Path(cfg.paths.work_dir)

    env = distributed.setup()
    if cfg.skip_completed and not cfg.resume:
        done = find_completed(results_dir, key) if env.is_main else None
        if distributed.broadcast_object(done is not None):
            if env.is_main:
                log.info("skipping: completed record exists at %s", done["_path"])
            return "skipped"

    fields = dict(
        key=key,
        task=cfg.task.name,
        task_family=cfg.task.family,
        optim=cfg.optim.name,
        seed=cfg.seed,
        scale=cfg.trainer.name,
        data_source=cfg.data.source,
        hparams=hparams_of(container),
        metric=container["task"]["metric"],
        versions=library_versions(),
        git=git_state(),
        config=container,
        world_size=env.world_size,
    )
    record: RunRecord | None = None
    error: str | None = None
    if env.is_main:
        try:
            if cfg.resume:
                record = _resume_target(results_dir, work_root, key, cfg.resume)
                record.data.update(status="running", finished_at=None, error=None)
                record.save()
                log.info("resuming run %s from %s", record.data["run_id"], record.path)
            else:
                record = RunRecord.create(results_dir, **fields)
                log.info("run record: %s", record.path)
        except ConfigError as e:
            error = str(e)
    # Every rank learns rank 0's run id (or its error), so all ranks write to one run or stop together.
    run_id, error = distributed.broadcast_object((record.data["run_id"] if record else None, error))
    if error is not None:
        raise ConfigError(error)
    if record is None:
        record = MirrorRecord(Path("/dev/null"), {**fields, "run_id": run_id, "history": [], "extra": {},
                                                   "best_metric": None, "best_select": None,
                                                   "final_metric": None})
    d = record.data
    try:
        wandb_run = open_wandb(container["logger"], record, resume=bool(cfg.resume)) if env.is_main else None
    except Exception as e:  # W&B is a mirror of the record: a broken W&B set-up must not lose the run
        log.warning("W&B disabled for this run: %s", e)
        wandb_run = None
    run = Run(record, work_root / d["task"] / d["optim"] / d["run_id"], wandb_run)

    def body(r: Run) -> None:
        family = importlib.import_module(f"tasks.{cfg.task.family}")
        seed_everything(cfg.seed)  # model initialisation and anything else the task draws before training
        family.train(cfg, r)

    try:
        status = run_to_status(run, body)
    except KeyboardInterrupt:
        raise
    except Exception:
        if not multirun:
            raise
        # A sweep goes on: the failure and its traceback are in the record.
        log.exception("run %s failed; recorded at %s", d["run_id"], record.path)
        return "failed"
    log.info("run %s: %s (best %s = %s)", d["run_id"], status, d["metric"]["name"], d["best_metric"])
    return status
