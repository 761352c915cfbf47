"""The training loop for torch-native tasks: one loop a reader can follow top to bottom.

    set up: device, model, optimizer, schedule -> one TrainState (everything a checkpoint holds)
    resume: TrainState.load_state_dict(last.pt)
    for epoch:
        reseed (so a resumed run replays the same data order and augmentation)
        for batch:
            train_step: forward, backward (with the double-backward graph only when AdaHessian needs it), step
            schedule per step; stop as ``diverged`` on a non-finite loss
            every trainer.eval_every steps (when set): evaluate -> record row (+ W&B)
        evaluate -> record row (+ W&B); schedule per epoch; checkpoint: TrainState.state_dict() -> last.pt
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

import optim

from . import distributed
from .measure import peak_memory, timing_summary
from .provenance import device_name
from .record import selection
from .schedules import Schedule
from .session import Diverged, Run, RunFailed, Terminated
from .task_api import TorchTask

# trainer.precision -> autocast dtype (None: no autocast). engine/launch.py validates the choice, once.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# backward(create_graph=True) links each parameter and its gradient in a reference cycle; torch warns about it on
# every Hessian step. The loop breaks the cycle itself with zero_grad(set_to_none=True) after every step.
warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True", category=UserWarning)


# -- pieces ------------------------------------------------------------------------------------------------
def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto" and torch.cuda.is_available() and distributed.env().enabled:
        return torch.device("cuda", local_rank)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={spec!r} but CUDA is not available here; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    # Distinct, reproducible stream per (seed, epoch): data order, augmentation and dropout replay on resume.
    return (seed * 1_000_003 + epoch * 7919) % 2**63


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def build_optimizer(cfg: DictConfig, task: TorchTask):
    # Through the registry, never hydra's instantiate: no `_target_` a config names is imported or called.
    factory = optim.optimizer_factory(OmegaConf.to_container(cfg.optim, resolve=True))
    params = task.param_sets if task.param_sets is not None else task.model.parameters()
    return factory(params)


def autocast_context(precision: str, device: torch.device):
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


@contextmanager
def frozen_norm_stats(model: torch.nn.Module):
    """Forward in train mode without touching BatchNorm running statistics.

    The Hessian sub-batch forward is an extra forward of the same step: letting it update the running mean and
    variance would count that part of the batch twice in the statistics used for evaluation.
    """
    saved = []
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            saved.append((m, m.momentum, m.num_batches_tracked.clone()))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch statistic: unchanged
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def train_step(
    task: TorchTask,
    optimizer,
    batch: Any,
    *,
    precision: str = "fp32",
    device: torch.device = torch.device("cpu"),
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
    hessian_batch_fraction: float = 1.0,
    model: torch.nn.Module | None = None,
) -> tuple[float, bool]:
    """One optimizer step. Returns (loss, whether this step drew a Hessian estimate).

    The double-backward graph is built only on steps where the optimizer will use it. With
    ``hessian_batch_fraction < 1`` the Hessian-vector product runs on the head of the batch (its own
    graph-carrying gradients), while the update uses the full-batch gradient from a plain backward.

    ``model`` is what the forward runs through (a DistributedDataParallel wrapper under torchrun; default
    ``task.model``). DDP's reducer cannot carry the double-backward graph, so graph-carrying backwards run under
    ``no_sync()`` and the gradients are averaged afterwards in one bucketed collective (optim/distributed.py);
    AdaHessian then averages its Hessian estimate over ranks itself.
    """
    model = task.model if model is None else model
    ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    local = model.no_sync if ddp else nullcontext
    hessian = optim.needs_hessian(optimizer)
    sub_batch = hessian and hessian_batch_fraction < 1.0
    hessian_grads = None
    if sub_batch:
        n = max(1, int(round(task.batch_size_of(batch) * hessian_batch_fraction)))
        params = [p for g in optimizer.param_groups for p in g["params"]]
        wanted = [p for p in params if p.requires_grad]
        with local(), frozen_norm_stats(model), autocast_context(precision, device):
            sub_loss = task.loss(model, task.head_of_batch(batch, n))
            scaled = scaler.scale(sub_loss) if scaler is not None else sub_loss
            grads = iter(torch.autograd.grad(scaled, wanted, create_graph=True, allow_unused=True))
        hessian_grads = [next(grads) if p.requires_grad else None for p in params]

    create_graph = hessian and not sub_batch
    with (local() if create_graph else nullcontext()):
        with autocast_context(precision, device):
            loss = task.loss(model, batch)
        (scaler.scale(loss) if scaler is not None else loss).backward(create_graph=create_graph)
    if ddp and create_graph:
        optim.allreduce_grads_(p for g in optimizer.param_groups for p in g["params"])

    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    kwargs = {"hessian_grads": hessian_grads} if hessian_grads is not None else {}
    if scaler is not None and grad_clip > 0 and hessian:
        # unscale_ above hid the loss scale from the optimizer; the Hessian estimate still carries it.
        kwargs["hessian_scale"] = scaler.get_scale()
    if scaler is not None:
        scaler.step(optimizer, **kwargs)
        optim.update_scaler(scaler, optimizer)  # backs off also when the Hessian-vector product overflowed
    else:
        optimizer.step(**kwargs)
    optimizer.zero_grad(set_to_none=True)
    loss = loss.detach().float()
    if ddp:  # every rank sees the same loss, so all of them stop together if it is not finite
        dist.all_reduce(loss)
        loss /= dist.get_world_size()
    return loss.item(), hessian


def shard_loader(loader, env: distributed.DistEnv, seed: int):
    """This rank's share of the training data (DistributedSampler); the global batch stays trainer.batch_size."""
    from torch.utils.data import DataLoader, DistributedSampler

    if not isinstance(loader, DataLoader):
        raise ValueError(f"torchrun with {env.world_size} processes needs a DataLoader training set; "
                         f"this task provides {type(loader).__name__}")
    if loader.batch_size % env.world_size:
        raise ValueError(f"trainer.batch_size={loader.batch_size} must be divisible by the {env.world_size} "
                         "processes (it is the global batch)")
    sampler = DistributedSampler(loader.dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                 seed=seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // env.world_size, sampler=sampler,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory, collate_fn=loader.collate_fn,
                      persistent_workers=loader.persistent_workers, drop_last=loader.drop_last), sampler


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the training state: everything a checkpoint holds -----------------------------------------------------------
@dataclass
class TrainState:
    """Model, optimizer, schedule, loss scaler and the loop's counters: what a resumed run needs to go on exactly.

    ``state_dict()`` is the checkpoint; it holds tensors, numbers, strings and lists only, so it loads with
    ``torch.load(..., weights_only=True)``.
    """

    model: torch.nn.Module
    optimizer: Any
    schedule: Schedule
    scaler: torch.amp.GradScaler | None = None
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    wall: float = 0.0  # seconds spent in train_step
    samples: int = 0  # training samples seen, over all ranks
    hessian_times: list[float] = field(default_factory=list)
    plain_times: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # the record's evaluation rows so far
    # A checkpoint taken inside an epoch (on SIGTERM): batches of the epoch already trained on, their losses, and
    # the random state after the last of them (resume replays the data to that point, then restores it).
    batch_in_epoch: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    rng: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else None,
            "epoch": self.epoch, "step": self.step, "wall": self.wall, "samples": self.samples,
            "hessian_times": self.hessian_times, "plain_times": self.plain_times, "history": self.history,
            "batch_in_epoch": self.batch_in_epoch, "epoch_losses": self.epoch_losses, "rng": self.rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.wall, self.samples = state["epoch"], state["step"], state["wall"], state["samples"]
        self.hessian_times, self.plain_times = list(state["hessian_times"]), list(state["plain_times"])
        self.history = list(state["history"])
        self.batch_in_epoch = state.get("batch_in_epoch", 0)
        self.epoch_losses, self.rng = list(state.get("epoch_losses") or []), state.get("rng")

    def timing(self) -> dict[str, Any]:
        return timing_summary(self.hessian_times, self.plain_times, self.samples, self.wall)


def rng_state() -> dict[str, Any]:
    """Every global random stream the loop draws from, in types ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
            else [], "numpy": [name, keys.tolist(), pos, has_gauss, cached], "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _stop_requested(run: Run, env: distributed.DistEnv) -> bool:
    """Whether SIGTERM arrived; under torchrun, on any rank (all ranks must stop after the same step)."""
    if not env.enabled:
        return run.stop_requested is not None
    flag = torch.tensor([1.0 if run.stop_requested else 0.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``path`` atomically (temporary file, then rename). A failed write (disk full, read-only folder)
    removes its temporary file, leaves the previous checkpoint intact and fails the run with its cause."""
    tmp = Path(f"{path}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunFailed(f"could not write checkpoint {path}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def _fmt(value: Any, spec: str) -> str:
    """A progress-line number; "-" for a missing or non-finite value (it must never stop the run)."""
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


# -- the loop ----------------------------------------------------------------------------------------------
def fit(cfg: DictConfig, run: Run, task: TorchTask) -> None:
    tc = cfg.trainer
    env = distributed.env()

    # -- set up: device, model, optimizer, schedule, one TrainState ------------------------------------------
    device = resolve_device(tc.device, env.local_rank)
    model = task.model.to(device)
    optimizer = build_optimizer(cfg, task)
    forward_model, train_loader, sampler = model, task.train_loader, None
    if env.enabled:  # torchrun: DDP for the gradient exchange (rank 0's parameters broadcast at wrap)
        forward_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        train_loader, sampler = shard_loader(task.train_loader, env, cfg.seed)
    limit = tc.limit_train_batches
    steps_per_epoch = min(len(train_loader), limit) if limit else len(train_loader)
    total_steps = tc.max_steps or steps_per_epoch * tc.epochs
    # Plateau schedules follow the model-selection score (PTB: the validation metric, not the test metric).
    select_key, select_higher = selection(OmegaConf.to_container(cfg.task.metric))
    schedule = Schedule(OmegaConf.to_container(cfg.task.schedule), optimizer, total_steps, select_higher)
    scaler = torch.amp.GradScaler(device.type) if tc.precision == "fp16" else None
    state = TrainState(model, optimizer, schedule, scaler)

    # -- resume: the checkpoint is authoritative (record rows after it were never checkpointed) -----------------
    if cfg.resume:
        if run.checkpoint_path.exists():
            state.load_state_dict(load_checkpoint(run.checkpoint_path, device))
        run.replace_history(state.history)  # no checkpoint yet: the run starts over under its own id
    run.update(device=device_name(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def checkpoint() -> None:
        state.history = run.record.data["history"]
        if tc.checkpoint and env.is_main:
            save_checkpoint(state.state_dict(), run.checkpoint_path)
        if env.enabled:
            dist.barrier()  # no rank runs ahead of rank 0's checkpoint

    def evaluate(epoch: float, losses: list[float]) -> dict[str, float]:
        """Evaluate, append the record's row (train_loss: mean over the steps since the previous evaluation of
        this epoch), stop as ``diverged`` on a non-finite score; the scores."""
        nonlocal last_metric
        history = run.record.data["history"]
        since = state.step - (history[-1]["step"] if history else 0)
        recent = losses[-since:] if 0 < since < len(losses) else losses
        scores = task.evaluate(model, task.val_loader, device, tc.limit_val_batches)
        row = {"epoch": epoch, "step": state.step, "train_loss": statistics.fmean(recent) if recent else None,
               **scores, "lr": optimizer.param_groups[0]["lr"], "time_s": state.wall}
        run.log_eval(row, step=state.step)
        last_metric = _fmt(scores[metric], ".2f")
        run.update(timing=state.timing(), **peak_memory(device))
        if tc.progress and env.is_main:
            tqdm.write(f"epoch {epoch:g}: train_loss {_fmt(row['train_loss'], '.4f')}  val_loss "
                       f"{_fmt(scores.get('val_loss'), '.4f')}  {metric} {last_metric}  best "
                       f"{_fmt(run.record.data['best_metric'], '.2f')}")
        if not all(math.isfinite(v) for v in scores.values()):
            raise Diverged(f"non-finite evaluation {scores} after epoch {epoch:g} (step {state.step})")
        return scores

    run.defer_stop = True  # SIGTERM: finish the step, checkpoint, then stop (see _stop_requested)
    skip = state.batch_in_epoch  # resumed inside an epoch: batches already trained on
    metric = task.metric.name
    last_metric = "-"  # the latest evaluation, shown on the progress bar
    eval_every = tc.get("eval_every")
    for epoch in range(state.epoch, tc.epochs):
        if tc.max_steps and state.step >= tc.max_steps:
            break
        # -- train one epoch ----------------------------------------------------------------------------------
        seed_everything(epoch_seed(cfg.seed, epoch))
        if task.on_epoch_start is not None:
            task.on_epoch_start(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        losses: list[float] = list(state.epoch_losses) if skip else []
        bar = tqdm(train_loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{tc.epochs}",
                   disable=not (tc.progress and env.is_main), leave=False, dynamic_ncols=True)
        for i, batch in enumerate(bar):
            if (limit and i >= limit) or (tc.max_steps and state.step >= tc.max_steps):
                break
            if i < skip:  # drawn as before the stop (same order, same augmentation), not trained on again
                if i == skip - 1:
                    set_rng_state(state.rng)
                continue
            batch = to_device(batch, device)
            _sync(device)
            t0 = time.perf_counter()
            loss, hessian = train_step(
                task, optimizer, batch, precision=tc.precision, device=device, scaler=scaler,
                grad_clip=tc.grad_clip, hessian_batch_fraction=tc.hessian_batch_fraction, model=forward_model,
            )
            _sync(device)
            dt = time.perf_counter() - t0
            (state.hessian_times if hessian else state.plain_times).append(dt)
            state.wall += dt
            n = task.batch_size_of(batch)
            state.samples += n * env.world_size  # global throughput
            state.step += 1
            if not math.isfinite(loss):
                run.update(timing=state.timing(), **peak_memory(device))
                raise Diverged(f"non-finite training loss ({loss}) at epoch {epoch + 1}, step {state.step}")
            schedule.after_step()
            losses.append(loss)
            lr = optimizer.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{loss:.4f}", **{metric: last_metric}, lr=f"{lr:.3g}",
                            sps=f"{n * env.world_size / dt:.0f}")
            if state.step % tc.log_every == 0:
                run.log_metrics({"train/loss": loss, "train/lr": lr, "train/samples_per_s": n / dt}, step=state.step)
            if (eval_every and state.step % eval_every == 0 and i + 1 < steps_per_epoch
                    and not (tc.max_steps and state.step >= tc.max_steps)):
                # A within-epoch point of the curve (the epoch's end is evaluated below); it may be the selected
                # one, but the per-epoch schedule (plateau) and the checkpoint stay per epoch.
                evaluate(round(epoch + (i + 1) / steps_per_epoch, 4), losses)
                model.train()
            if _stop_requested(run, env):
                state.batch_in_epoch, state.epoch_losses, state.rng = i + 1, losses, rng_state()
                checkpoint()
                raise Terminated(run.stop_requested or "SIGTERM")
        bar.close()
        skip = 0

        # -- evaluate and record --------------------------------------------------------------------------------
        scores = evaluate(epoch + 1, losses)
        if schedule.monitor is not None and schedule.monitor not in scores:
            raise ValueError(f"task.schedule.monitor={schedule.monitor!r} is not a validation score; choose one of "
                             f"{', '.join(scores)}")
        schedule.after_epoch(scores[schedule.monitor or select_key])

        # -- checkpoint ---------------------------------------------------------------------------------------
        state.epoch, state.batch_in_epoch, state.epoch_losses, state.rng = epoch + 1, 0, [], None
        checkpoint()
        if _stop_requested(run, env):  # SIGTERM during the evaluation: the epoch's checkpoint is the resume point
            raise Terminated(run.stop_requested or "SIGTERM")
