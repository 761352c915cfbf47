"""Run records: one JSON file per run, the single source the tables and figures are built from.

Layout: ``<results_dir>/runs/<task>/<optim>/<run_id>.json``.

Schema (``schema: 2``; readers also accept 1, which has no ``deviations``: "recipe unknown")::

    schema        2
    run_id        unique id, "<UTC time>-<6 hex>"; survives resume
    key           hash of the config fields that define the experiment (task, optimizer, seed, scale,
                  hyperparameters): sweeps use it to skip runs that already completed
    task          task config name, e.g. "cifar10_resnet20"; task_family: "vision", "translation", ...
    optim         optimizer config name, e.g. "adahessian"
    seed          int
    scale         trainer profile: "smoke" or "paper" (or a user profile name)
    deviations    sorted "dotted.key=value" strings: the recipe settings in which this run differs from its
                  profile's own recipe for the same task and optimizer (engine/recipe.py); [] = exactly the
                  profile's recipe, None = could not be determined
    data_source   "real" or "synthetic"
    hparams       flat dict: lr, lr_scale, weight_decay, block_size, update_each, hessian_batch_fraction, ...
    metric        {"name": "top1_acc", "higher_is_better": true}, optionally with "select_by" and
                  "select_higher_is_better": then best_metric is the metric at the evaluation with the best
                  select_by value (PTB: test perplexity of the best-validation model), not the best metric
    status        "running" | "completed" | "diverged" | "failed" | "interrupted"
    owner         {"host", "pid", "pid_start"} of the process that runs (or last ran) it: a "running" record
                  whose owner is gone is stale (readers see ``_stale: true``) and resumable
    best_metric   best evaluation metric over the run (None until evaluated)
    best_select   the selection score behind best_metric (= best_metric without select_by)
    final_metric  metric at the last evaluation
    history       list of per-epoch (or per-validation) dicts: epoch, step, train_loss, val_loss, <metric>, lr, time_s
    timing        {"hessian_step_s": median, "plain_step_s": median, "n_hessian_steps", "n_plain_steps",
                   "samples_per_s", "wall_s"} (engine/measure.py timing_summary)
    peak_rss_mb   peak resident memory of the training process (MiB)
    peak_tensor_mb  peak bytes held by torch's CUDA allocator (MiB); None on CPU
    device        e.g. "cpu" or "NVIDIA H200"
    versions      {"python", "torch", "torchvision", "fairseq", ...}
    git           {"commit": sha or None, "dirty": bool or None}
    config        the resolved Hydra config
    error         None, or the cause (a traceback's last lines for an unexpected failure) when the status is
                  "failed", "diverged" or "interrupted"
    extra         task-specific results (e.g. BLEU details for translation)
    started_at, updated_at, finished_at   ISO-8601 UTC

Writes are atomic (temporary file, then ``os.link`` to create or ``os.replace`` to update), so a reader never
sees a half-written or empty record, and a new run never takes another run's file: ids are unique and creation
fails rather than overwrite. Readers skip (with a :class:`RecordWarning` naming the file) anything that is not a
record of a schema they know.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import secrets
import socket
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
FINAL_STATUSES = ("completed", "diverged", "failed", "interrupted")
REQUIRED_FIELDS = ("run_id", "task", "optim", "status")


class RecordWarning(UserWarning):
    """A file under results/runs that is not a readable run record; it is skipped, never deleted."""


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


def _write_temp(path: Path, data: dict[str, Any]) -> str:
    """``data`` as JSON in a new temporary file beside ``path`` (flushed to disk); returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_json_safe(data), f, indent=2, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` by ``data`` in one step: readers see the old file or the new one, never a part."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def create_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to a new file ``path`` in one step; ``FileExistsError`` (and nothing written) if it exists.

    The content is complete before the name appears (link of a finished temporary file), so a full disk or a
    kill can leave no empty or partial record behind.
    """
    tmp = _write_temp(path, data)
    try:
        os.link(tmp, path)  # fails if path exists: never overwrites
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP) or isinstance(e, FileExistsError):
            raise
        # A filesystem without hard links: exclusive create, then fill in place (the only non-atomic fallback).
        with open(path, "x") as f, open(tmp) as src:
            f.write(src.read())
    finally:
        os.unlink(tmp)


def record_path(results_dir: Path | str, task: str, optim: str, run_id: str) -> Path:
    return Path(results_dir) / "runs" / task / optim / f"{run_id}.json"


def selection(metric: dict[str, Any]) -> tuple[str, bool]:
    """The select-by-validation rule, in one place: (the score that picks the best evaluation, higher is better).

    A task with ``select_by`` (PTB) reports the metric of the evaluation with the best ``select_by`` value;
    otherwise the metric selects itself.
    """
    if metric.get("select_by"):
        return metric["select_by"], bool(metric.get("select_higher_is_better", metric["higher_is_better"]))
    return metric["name"], bool(metric["higher_is_better"])


# -- the owner of a running record -----------------------------------------------------------------------------
def _pid_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), so a reused pid is not mistaken for it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of proc(5); fields[0] is field 3
    except (OSError, IndexError):
        return None


def current_owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _pid_start(pid)}


def owner_alive(data: dict[str, Any]) -> bool | None:
    """Whether the process that owns this record still runs: True/False on this host, None when unknowable
    (another host, or a record without an owner)."""
    owner = data.get("owner")
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname() or not owner.get("pid"):
        return None
    start = _pid_start(int(owner["pid"]))
    if start is None:
        return False
    return owner.get("pid_start") is None or start == owner["pid_start"]


def is_stale(data: dict[str, Any]) -> bool:
    """A record that says "running" although its owner is known to be gone (kill -9, node lost)."""
    return data.get("status") == "running" and owner_alive(data) is False


@dataclass
class RunRecord:
    """The in-memory record of one run; ``save()`` writes it atomically to its own file."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def create(cls, results_dir: Path | str, *, run_id: str | None = None, **fields: Any) -> "RunRecord":
        run_id = run_id or new_run_id()
        path = record_path(results_dir, fields["task"], fields["optim"], run_id)
        now = utc_now()
        data = {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "status": "running",
            "owner": current_owner(),
            "deviations": None,
            "best_metric": None,
            "best_select": None,
            "final_metric": None,
            "history": [],
            "timing": {},
            "peak_rss_mb": None,
            "peak_tensor_mb": None,
            "error": None,
            "extra": {},
            "started_at": now,
            "updated_at": now,
            "finished_at": None,
            **fields,
        }
        create_json(path, data)  # complete on disk before its name exists; never overwrites
        return cls(path, data)

    @classmethod
    def load(cls, path: Path | str) -> "RunRecord":
        path = Path(path)
        data, problem = read_record(path)
        if data is None:
            raise ValueError(f"run record {path} {problem}")
        return cls(path, data)

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
        key, higher = selection(spec)
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


def read_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the record in ``path``, "") or (None, what is wrong with it): a reader's one check of a file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot be read ({e})"
    except json.JSONDecodeError as e:
        return None, "is empty" if not path.stat().st_size else f"is not valid JSON ({e})"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not a run record"
    if data.get("schema") not in READABLE_SCHEMAS:
        return None, (f"has schema {data.get('schema')!r}; this version reads schema "
                      f"{' or '.join(map(str, READABLE_SCHEMAS))}")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    return data, ""


def iter_records(results_dir: Path | str) -> Iterator[dict[str, Any]]:
    """Every run record under ``results_dir/runs``, with ``_path`` and ``_stale`` added.

    A file that is not a readable record (empty, not JSON, a JSON list, an unknown schema) is skipped with a
    :class:`RecordWarning` naming it and saying what is wrong: one bad file must not block every table.
    """
    root = Path(results_dir) / "runs"
    for path in sorted(root.glob("*/*/*.json")):
        data, problem = read_record(path)
        if data is None:
            warnings.warn(f"skipping {path}: it {problem}; move or delete it", RecordWarning, stacklevel=2)
            continue
        data["_path"] = str(path)
        data["_stale"] = is_stale(data)
        yield data


def find_completed(results_dir: Path | str, key: str) -> dict[str, Any] | None:
    """The completed record with this experiment key, if any (sweeps skip such runs)."""
    for data in iter_records(results_dir):
        if data.get("key") == key and data.get("status") == "completed":
            return data
    return None
