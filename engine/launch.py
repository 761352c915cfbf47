"""From a composed config to a finished run record: validate, check the data, open (or resume) the run, train,
close.

``run.py`` is a thin Hydra entry point around :func:`launch`. Everything that can be refused is refused before a
record exists, each with one line naming the bad value and what is allowed.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import optim

from . import distributed, recipe, resources
from .provenance import git_state, library_versions
from .record import RunRecord, current_owner, experiment_key, find_completed, iter_records, owner_alive
from .session import Run, Terminated, open_wandb, run_to_status
from .tracking import MODES
from .trainer import PRECISIONS, resolve_device, seed_everything

log = logging.getLogger("run")

# Config fields that do not change the experiment's outcome: excluded from its key.
_NOT_IN_KEY = ("paths", "logger", "resume", "skip_completed", "hydra", "sources")
_TRAINER_NOT_IN_KEY = ("progress", "device", "num_workers", "num_threads", "checkpoint", "log_every",
                       "fast_batchnorm", "fast_conv")
# Trainer settings added after records existed, at the value that means "as before": left out of the key at that
# value, so earlier records keep their keys (skip_completed, resume) and a run of the same command matches them.
_TRAINER_ADDED = {"eval_every": None}
# Keys of the optimizer config that are not hyperparameters (every other scalar key is one).
_NOT_HPARAMS = ("_target_", "_partial_", "name")
# A run in one of these states may be continued by resume (a stale "running" one only when its owner is gone).
_RESUMABLE = ("interrupted", "failed", "running")


class ConfigError(ValueError):
    """A bad configuration value; run.py prints it as one line."""


class MirrorRecord(RunRecord):
    """A non-zero torchrun rank's view of rank 0's record: same fields, never written."""

    def save(self) -> None:
        pass


def _experiment_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in cfg.items() if k not in _NOT_IN_KEY}
    fields["trainer"] = {k: v for k, v in cfg["trainer"].items() if k not in _TRAINER_NOT_IN_KEY
                         and not (k in _TRAINER_ADDED and v == _TRAINER_ADDED[k])}
    return fields


def _scalar_items(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_scalar_items(v, f"{prefix}{k}."))
        elif v is None or isinstance(v, (bool, int, float, str)) or (
                isinstance(v, (list, tuple)) and all(isinstance(x, (bool, int, float, str)) for x in v)):
            out[f"{prefix}{k}"] = v
    return out


def hparams_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """Every scalar (or list-of-scalars) key of the optimizer config, whatever the optimizer (nested per_set keys
    dotted: ``per_set.embeddings.lr``), plus the trainer's Hessian batch fraction and precision."""
    h = _scalar_items({k: v for k, v in cfg["optim"].items() if k not in _NOT_HPARAMS})
    h["hessian_batch_fraction"] = cfg["trainer"].get("hessian_batch_fraction", 1.0)
    h["precision"] = cfg["trainer"].get("precision", "fp32")
    return h


def _positive_int(value: Any, *, optional: bool = False) -> bool:
    if optional and value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate(cfg: DictConfig) -> None:
    """Reject bad values before anything is written, each with one line naming it and what is allowed."""
    if cfg.logger.mode not in MODES:
        raise ConfigError(f"logger.mode={cfg.logger.mode!r} is not allowed; choose one of {', '.join(MODES)}")
    sources = ("real", "synthetic")
    if cfg.data.source not in sources:
        raise ConfigError(f"data.source={cfg.data.source!r} is not allowed; choose one of {', '.join(sources)}")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} is not allowed; it must be a non-negative integer")
    tc = cfg.trainer
    for key in ("epochs", "batch_size", "log_every"):
        if key in tc and not _positive_int(tc[key]):
            raise ConfigError(f"trainer.{key}={tc[key]!r} is not allowed; it must be a positive integer")
    for key in ("limit_train_batches", "limit_val_batches", "max_steps", "eval_every"):
        if key in tc and not _positive_int(tc[key], optional=True):
            raise ConfigError(f"trainer.{key}={tc[key]!r} is not allowed; it must be null (no limit) or a "
                              "positive integer")
    if "eval_batch_size" in cfg.task and not _positive_int(cfg.task.eval_batch_size, optional=True):
        raise ConfigError(f"task.eval_batch_size={cfg.task.eval_batch_size!r} is not allowed; it must be a "
                          "positive integer")
    for key in ("num_threads", "num_workers"):
        value = tc.get(key, "auto")
        if value != "auto" and not (isinstance(value, int) and not isinstance(value, bool)
                                    and value >= (1 if key == "num_threads" else 0)):
            least = "a positive" if key == "num_threads" else "a non-negative"
            raise ConfigError(f"trainer.{key}={value!r} is not allowed; use auto or {least} integer")
    precision = tc.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not allowed; choose one of {', '.join(PRECISIONS)}")
    try:  # also for translation: fairseq gets the same devices (tasks/translation/fairseq_args.py)
        device = resolve_device(tc.device, distributed.env().local_rank)
    except (ValueError, RuntimeError) as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"trainer.precision='fp16' needs CUDA (GradScaler) but the device is {device}; "
                          "on CPU use bf16 or fp32")
    frac = tc.get("hessian_batch_fraction", 1.0)
    if not 0.0 < frac <= 1.0:
        raise ConfigError(f"trainer.hessian_batch_fraction={frac!r} is not allowed; it must be in (0, 1]")
    validate_optim(cfg.optim)
    task_family(cfg.task.family)


def validate_optim(optim_cfg: DictConfig | dict[str, Any]) -> None:
    """Build the optimizer on dummy parameters (one per named set) from the plain config, through the registry:
    nothing the config names is imported or called before this passes, except the optimizer class itself."""
    container = OmegaConf.to_container(optim_cfg, resolve=True) if isinstance(optim_cfg, DictConfig) else optim_cfg
    name = container.get("name") if isinstance(container, dict) else None
    try:
        factory = optim.optimizer_factory(container)
        dummy = lambda: [torch.nn.Parameter(torch.zeros(2, 2))]  # noqa: E731
        sets = container.get("per_set") or {}
        params = {**{set_name: dummy() for set_name in sets}, "_others": dummy()} if sets else dummy()
        factory(params)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optim={name}: {e}") from None


def task_family(family: str) -> Any:
    """The task family package: ``vision`` -> ``tasks.vision``; a dotted import path (``my_pkg.my_family``) for a
    family outside this repository. It must define ``train(cfg, run)``."""
    module_name = family if "." in str(family) else f"tasks.{family}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"task.family={family!r} does not import as {module_name} ({e}); use a family under "
                          "tasks/ (vision, language_model, ...) or an import path my_pkg.my_family") from None
    if not callable(getattr(module, "train", None)):
        raise ConfigError(f"task.family={family!r}: module {module_name} has no train(cfg, run)")
    return module


def check_data(cfg: DictConfig, family) -> None:
    """The family's own data check (``check_data(cfg)``, optional), before any record exists: a missing dataset
    is then "missing" in the tables, not a failed run. Synthetic data is generated, so it is not checked."""
    check = getattr(family, "check_data", None)
    if check is None or cfg.data.source != "real":
        return
    try:
        check(cfg)
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


def resolve_cpu_auto(cfg: DictConfig) -> str:
    """Replace ``trainer.num_threads`` / ``trainer.num_workers`` = auto in ``cfg`` by numbers (engine/resources.py)
    and return the log line that says what was chosen. Anything that builds a task from a composed config without
    :func:`launch` (scripts/speed.py) calls this first; families only ever see numbers."""
    tc = cfg.trainer
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    threads, workers, line = resources.choose(tc.get("num_threads", "auto"), tc.get("num_workers", "auto"), local)
    with _writable(cfg):
        tc.num_threads, tc.num_workers = threads, workers
    return line


@contextmanager
def _writable(cfg: DictConfig):
    readonly, struct = OmegaConf.is_readonly(cfg), OmegaConf.is_struct(cfg)
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, False)
    try:
        yield
    finally:
        OmegaConf.set_readonly(cfg, readonly)
        OmegaConf.set_struct(cfg, struct)


def _choices(cfg: DictConfig) -> tuple[str, str, str]:
    """The task, optim and trainer config names this run was composed from."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        c = HydraConfig.get().runtime.choices
        return c.get("task"), c.get("optim"), c.get("trainer")
    return cfg.task.name, cfg.optim.name, cfg.trainer.name


def run_deviations(cfg: DictConfig, container: dict[str, Any]) -> list[str] | None:
    """The record's ``deviations`` (engine/recipe.py); None when the profile's recipe cannot be composed."""
    task, optim, profile = _choices(cfg)
    try:
        return recipe.deviations(container, recipe.compose_recipe(task, optim, profile))
    except Exception as e:  # the run itself is valid; its record then says "recipe unknown"
        log.warning("could not compose the recipe task=%s optim=%s trainer=%s to compare with: %s",
                    task, optim, profile, e)
        return None


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two configs (as this command has them)."""
    fa, fb = recipe._flatten(a), recipe._flatten(b)
    return [f"{k}={recipe._show(fa[k]) if k in fa else '<unset>'} (run: "
            f"{recipe._show(fb[k]) if k in fb else '<unset>'})"
            for k in sorted(set(fa) | set(fb)) if k not in fa or k not in fb or not recipe._same(fa[k], fb[k])]


def _resume_target(results_dir: Path, work_root: Path, key: str, resume: Any, container: dict[str, Any],
                   checkpoints_itself: bool) -> RunRecord:
    """The record to continue: the given run id, or the latest unfinished run of this experiment.

    Refused, with one line, when the run id's record is completed (a completed record is never rewritten), was
    made by a different command (the experiment key differs: the line says which settings), or is still owned by
    a live process (two processes would write one record and one checkpoint).
    """
    if resume is True:
        candidates = [r for r in iter_records(results_dir) if r.get("key") == key and r["status"] in _RESUMABLE]
        if not candidates:
            raise ConfigError(f"resume=true: found no unfinished run of this experiment under {results_dir}/runs; "
                              "start without resume")
        target = max(candidates, key=lambda r: r["started_at"])
    else:
        found = [r for r in iter_records(results_dir) if r["run_id"] == str(resume)]
        if not found:
            raise ConfigError(f"resume={resume!r}: no run with this id under {results_dir}/runs")
        target = found[0]
        if target["status"] not in _RESUMABLE:
            raise ConfigError(f"resume={resume!r}: the run is {target['status']}; a finished record is never "
                              "rewritten (start a new run without resume)")
        if target.get("key") != key:
            diff = _differences(_experiment_fields(container), _experiment_fields(target.get("config") or {}))
            shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise ConfigError(f"resume={resume!r}: this command is a different experiment from the run; it "
                              f"differs in {shown or 'its experiment key'}")
    rid = target["run_id"]
    if target["status"] == "running" and owner_alive(target) is not False:
        owner = target.get("owner") or {}
        if owner_alive(target):
            raise ConfigError(f"resume: run {rid} is still running (pid {owner.get('pid')} on this host); "
                              "stop it first or wait for it to finish")
        if resume is True and not _requeued():  # another host (or no owner): cannot tell whether it still runs
            raise ConfigError(f"resume=true: run {rid} is marked running by {owner.get('host', 'an unknown host')}"
                              f"; if that process is gone, take the run over with resume={rid}")
    if not checkpoints_itself and not (work_root / target["task"] / target["optim"] / rid / "last.pt").exists():
        log.warning("run %s has no checkpoint yet: it starts over from the beginning under its own id", rid)
    return RunRecord.load(target["_path"])


def _requeued() -> bool:
    """Whether this process is a SLURM job that was requeued (after preemption, a node failure, or by submitit)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


@contextmanager
def _sigterm_interrupts(run: Run):
    """SIGTERM (SLURM before preemption or at the time limit) stops the run like Ctrl-C, recorded ``interrupted``
    and resumable: the torch-native loop checkpoints after its current step first (``Run.defer_stop``). Only the
    main thread can install a handler; elsewhere nothing changes."""
    def handler(signum, frame):
        if run.defer_stop:
            run.stop_requested = "SIGTERM"
        else:
            raise Terminated("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch(cfg: DictConfig, *, multirun: bool = False) -> str:
    """Train one configuration and return its final status ("skipped" when skip_completed found it done)."""
    # -- refuse what can be refused, before anything is written ---------------------------------------------------
    validate(cfg)
    family = task_family(cfg.task.family)
    check_data(cfg, family)
    cpu_line = resolve_cpu_auto(cfg)
    torch.set_num_threads(cfg.trainer.num_threads)
    container = OmegaConf.to_container(cfg, resolve=True)
    key = experiment_key(_experiment_fields(container))
    results_dir = Path(cfg.paths.results_dir)
    work_root = Path(cfg.paths.work_dir)

    env = distributed.setup()
    if not cfg.resume and _requeued() and env.is_main and any(
            r.get("key") == key and r["status"] in _RESUMABLE and owner_alive(r) is not True
            for r in iter_records(results_dir)):
        # A requeued SLURM job (preempted, or requeued by submitit) runs its original command again: continue
        # the run it interrupted instead of starting a second one.
        log.info("requeued job (SLURM_RESTART_COUNT=%s): continuing this experiment's interrupted run",
                 os.environ["SLURM_RESTART_COUNT"])
        with _writable(cfg):
            cfg.resume = True
    if env.enabled:
        with _writable(cfg):
            cfg.resume = distributed.broadcast_object(cfg.resume)
    if cfg.skip_completed and not cfg.resume:
        done = find_completed(results_dir, key) if env.is_main else None
        if distributed.broadcast_object(done is not None):
            if env.is_main:
                log.info("skipping: completed record exists at %s", done["_path"])
            return "skipped"

    # -- open the run: a new record, or the one being resumed -----------------------------------------------------
    fields = dict(
        key=key,
        task=cfg.task.name,
        task_family=cfg.task.family,
        optim=cfg.optim.name,
        seed=cfg.seed,
        scale=cfg.trainer.name,
        deviations=run_deviations(cfg, container) if env.is_main else None,
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
                record = _resume_target(results_dir, work_root, key, cfg.resume, container,
                                        bool(getattr(family, "CHECKPOINTS_ITSELF", False)))
                record.data.update(status="running", finished_at=None, error=None, owner=current_owner())
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
    if env.is_main:
        log.info("%s", cpu_line)
    d = record.data
    try:
        wandb_run = open_wandb(container["logger"], record, resume=bool(cfg.resume)) if env.is_main else None
    except Exception as e:  # W&B is a mirror of the record: a broken W&B set-up must not lose the run
        log.warning("W&B disabled for this run: %s", e)
        wandb_run = None
    run = Run(record, work_root / d["task"] / d["optim"] / d["run_id"], wandb_run)

    # -- train: the family's loop; the outcome becomes the record's final status ----------------------------------
    def body(r: Run) -> None:
        seed_everything(cfg.seed)  # model initialisation and anything else the task draws before training
        family.train(cfg, r)

    try:
        with _sigterm_interrupts(run):
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
