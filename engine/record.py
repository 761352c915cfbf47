"""Run records: one JSON file per run, the single source the tables and figures are built from.

Layout: ``<results_dir>/runs/<task>/<optim>/<run_id>.json``.

Schema (``schema: 1``)::

    run_id        unique id, "<UTC time>-<6 hex>"; survives resume
    key           hash of the config fields that define the experiment (task, optimizer, seed, scale,
                  hyperparameters): sweeps use it to skip runs that already completed
    task          task config name, e.g. "cifar10_resnet20"; task_family: "vision", "translation", ...
    optim         optimizer config name, e.g. "adahessian"
    seed          int
    scale         trainer profile: "smoke" or "paper" (or a user profile name)
    data_source   "real" or "synthetic"
    hparams       flat dict: lr, lr_scale, weight_decay, block_size, update_each, hessian_batch_fraction, ...
    metric        {"name": "top1_acc", "higher_is_better": true}, optionally with "select_by" and
                  "select_higher_is_better": then best_metric is the metric at the evaluation with the best
                  select_by value (PTB: test perplexity of the best-validation model), not the best metric
    status        "running" | "completed" | "diverged" | "failed" | "interrupted"
    best_metric   best evaluation metric over the run (None until evaluated)
    final_metric  metric at the last evaluation
    history       list of per-epoch (or per-validation) dicts: epoch, step, train_loss, val_loss, <metric>, lr, time_s
    timing        {"hessian_step_s": median, "plain_step_s": median, "n_hessian_steps", "n_plain_steps",
                   "samples_per_s", "wall_s"}
    peak_memory_mb
    device        e.g. "cpu" or "NVIDIA H200"
    versions      {"python", "torch", "torchvision", "fairseq", ...}
    git           {"commit": sha or None, "dirty": bool or None}
    config        the resolved Hydra config
    error         None, or the exception's last lines when status is "failed"/"diverged"
    extra         task-specific results (e.g. BLEU details for translation)
    started_at, updated_at, finished_at   ISO-8601 UTC

Writes are atomic (temporary file + ``os.replace``), so a reader never sees half a record, and a new run never
reuses another run's file: ids are unique and creation uses exclusive open.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
FINAL_STATUSES = ("completed", "diverged", "failed", "interrupted")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _canonical(obj: Any) -> Any:
    # 1 and 1.0 are the same setting (`optim.lr_scale=1` vs the default 1.0): numbers hash as floats.
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, float)):
        return float(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return str(obj)


def experiment_key(fields: dict[str, Any]) -> str:
    """A stable hash of what defines an experiment, independent of key order, number spelling and paths."""
    blob = json.dumps(_canonical(fields), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _json_safe(obj: Any) -> Any:
    """JSON has no NaN/inf: a diverged loss is stored as None, with the status saying why."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _json_safe(obj.item())
    return obj


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_json_safe(data), f, indent=2, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def record_path(results_dir: Path | str, task: str, optim: str, run_id: str) -> Path:
    return Path(results_dir) / "runs" / task / optim / f"{run_id}.json"


@dataclass
class RunRecord:
    """The in-memory record of one run; ``save()`` writes it atomically to its own file."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def create(cls, results_dir: Path | str, *, run_id: str | None = None, **fields: Any) -> "RunRecord":
        run_id = run_id or new_run_id()
        path = record_path(results_dir, fields["task"], fields["optim"], run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Exclusive create: two runs can never share (and overwrite) one record file.
        with open(path, "x") as f:
            f.write("{}")
        now = utc_now()
        data = {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "status": "running",
            "best_metric": None,
            "best_select": None,  # the selection score behind best_metric (= best_metric without select_by)
            "final_metric": None,
            "history": [],
            "timing": {},
            "peak_memory_mb": None,
            "error": None,
            "extra": {},
            "started_at": now,
            "updated_at": now,
            "finished_at": None,
            **fields,
        }
        rec = cls(path, data)
        rec.save()
        return rec

    @classmethod
    def load(cls, path: Path | str) -> "RunRecord":
        path = Path(path)
        return cls(path, json.loads(path.read_text()))

    def save(self) -> None:
        self.data["updated_at"] = utc_now()
        atomic_write_json(self.path, self.data)

    # -- updates used by trainers -------------------------------------------------------------------------
    def log_eval(self, row: dict[str, Any]) -> None:
        """Append one evaluation row and update best/final metric from ``row[metric name]``."""
        self.data["history"].append(_json_safe(row))
        spec = self.data["metric"]
        value = row.get(spec["name"])
        if not _finite(value):
            return
        self.data["final_metric"] = value
        key = spec.get("select_by") or spec["name"]
        higher = spec.get("select_higher_is_better", spec["higher_is_better"]) if spec.get("select_by") \
            else spec["higher_is_better"]
        score = row.get(key)
        if not _finite(score):
            return
        best = self.data.get("best_select")
        if best is None or (score > best if higher else score < best):
            self.data["best_select"] = score
            self.data["best_metric"] = value

    def finish(self, status: str, error: str | None = None) -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"status={status!r} is not a final status; allowed: {', '.join(FINAL_STATUSES)}")
        self.data["status"] = status
        self.data["error"] = error
        self.data["finished_at"] = utc_now()
        self.save()


def iter_records(results_dir: Path | str) -> Iterator[dict[str, Any]]:
    """Every run record under ``results_dir/runs``; unreadable files are reported, not silently dropped."""
    root = Path(results_dir) / "runs"
    for path in sorted(root.glob("*/*/*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"run record {path} is not valid JSON ({e}); move or delete it") from e
        if data:  # an empty "{}" is a record being created right now
            data["_path"] = str(path)
            yield data


def find_completed(results_dir: Path | str, key: str) -> dict[str, Any] | None:
    """The completed record with this experiment key, if any (sweeps skip such runs)."""
    for data in iter_records(results_dir):
        if data.get("key") == key and data.get("status") == "completed":
            return data
    return None
