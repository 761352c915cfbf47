"""One run: its record, its W&B run and its working directory, opened and always closed together.

Task families receive a :class:`Run` and report through it; the launcher decides the final status:
returning normally is ``completed``, raising :class:`Diverged` is ``diverged``, ``KeyboardInterrupt`` (Ctrl-C, or
:class:`Terminated` for SIGTERM) is ``interrupted`` and any other exception is ``failed`` (re-raised after the
record is written; :class:`RunFailed` records its one-line cause, anything else the traceback's tail).
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from .record import RunRecord
from .tracking import init_wandb

log = logging.getLogger("run")


class Diverged(RuntimeError):
    """Training produced a non-finite loss or metric. A recorded outcome (the LR sweeps need it), not a crash."""


class RunFailed(RuntimeError):
    """A failure whose cause is known (e.g. the disk is full): recorded and shown as its one-line message."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: what SLURM sends before preemption or at the time limit. Recorded as ``interrupted`` (resumable)."""


class Run:
    def __init__(self, record: RunRecord, work_dir: Path, wandb_run=None):
        self.record = record
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb_run
        # SIGTERM: a loop that can checkpoint between steps sets ``defer_stop``; the signal then only sets
        # ``stop_requested`` and the loop checkpoints after the current step and raises Terminated itself.
        # Otherwise the signal raises Terminated at once.
        self.defer_stop = False
        self.stop_requested: str | None = None

    @property
    def run_id(self) -> str:
        return self.record.data["run_id"]

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / "last.pt"

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Training-curve points (W&B only; the record keeps per-evaluation rows)."""
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def log_eval(self, row: dict[str, Any], step: int | None = None) -> None:
        """One evaluation: appended to the record (saved at once) and sent to W&B."""
        self.record.log_eval(row)
        self.record.save()
        if self.wandb is not None:
            self.wandb.log({f"eval/{k}": v for k, v in row.items()}, step=step)

    def update(self, **fields: Any) -> None:
        """Set top-level record fields (timing, peak_rss_mb, extra, ...) and save."""
        for k, v in fields.items():
            if k == "extra":
                self.record.data["extra"].update(v)
            else:
                self.record.data[k] = v
        self.record.save()

    def replace_history(self, history: list[dict[str, Any]]) -> None:
        """On resume the checkpoint's history is authoritative (rows after it were never checkpointed)."""
        data = self.record.data
        data["history"], data["best_metric"], data["best_select"], data["final_metric"] = [], None, None, None
        for row in history:
            self.record.log_eval(row)
        self.record.save()

    def close(self, status: str, error: str | None = None) -> None:
        self.record.finish(status, error)
        if self.wandb is not None:
            summary = {
                "status": status,
                "best_metric": self.record.data["best_metric"],
                "final_metric": self.record.data["final_metric"],
            }
            for k, v in summary.items():
                self.wandb.summary[k] = v
            # A failed run still ends its W&B run, with a non-zero exit code so the UI shows it as failed.
            self.wandb.finish(exit_code=0 if status in ("completed", "diverged") else 1)


def open_wandb(logger_cfg: dict[str, Any], record: RunRecord, resume: bool):
    d = record.data
    return init_wandb(
        mode=logger_cfg["mode"],
        project=logger_cfg["project"],
        entity=logger_cfg.get("entity"),
        run_id=d["run_id"],
        name=f"{d['task']}/{d['optim']}/s{d['seed']}",
        group=f"{d['task']}/{d['optim']}",
        tags=[d["task"], d["optim"], d["scale"], *logger_cfg.get("tags", [])],
        config=d["config"],
        save_dir=logger_cfg["save_dir"],
        resume=resume,
    )


def _close(run: Run, status: str, error: str | None) -> None:
    """Close the run; if even that fails (a full disk), say so without hiding the exception being handled."""
    try:
        run.close(status, error)
    except Exception as e:
        log.error("could not record status %r for run %s: %s", status, run.run_id, e)


def run_to_status(run: Run, body) -> str:
    """Call ``body(run)`` and close the run with the status its outcome implies. Returns the status."""
    try:
        body(run)
    except Diverged as e:
        run.close("diverged", str(e))
        return "diverged"
    except KeyboardInterrupt as e:
        _close(run, "interrupted", "SIGTERM" if isinstance(e, Terminated) else "KeyboardInterrupt")
        raise
    except RunFailed as e:
        _close(run, "failed", str(e))
        raise
    except BaseException:
        _close(run, "failed", traceback.format_exc(limit=20)[-4000:])
        raise
    run.close("completed")
    return "completed"
