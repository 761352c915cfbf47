"""Run records (engine/record.py) as pandas DataFrames.

``load_runs`` gives one row per record; ``dedupe`` keeps one outcome per experiment (the same key run twice:
a failed run re-run, or a forced rerun), and ``load_history`` gives the per-evaluation rows for curves.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from engine.record import iter_records

# Hyperparameters every table can filter on (swept or held at their defaults), present as columns even when no
# record has them; every other scalar key of a record's hparams becomes a column too (see runs_frame).
SWEPT_HPARAMS = ["lr_scale", "block_size", "update_each", "hessian_batch_fraction"]
TIMING = ["hessian_step_s", "plain_step_s", "n_hessian_steps", "n_plain_steps", "samples_per_s", "wall_s"]
BASE_COLUMNS = [
    "run_id", "key", "task", "task_family", "optim", "seed", "scale", "data_source", "status", "stale",
    "deviations", "metric_name", "higher_is_better", "best_metric", "final_metric", *TIMING,
    "peak_rss_mb", "peak_tensor_mb", "device", "n_evals", "started_at", "finished_at", "error", "path", "mtime",
    "config",
]
# When one experiment has several records, the outcome shown is the first status in this order, latest first.
STATUS_PRIORITY = ["completed", "diverged", "running", "failed", "interrupted"]
# A record of schema 1 has no `deviations`: nobody can tell whether it ran its profile's recipe.
RECIPE_UNKNOWN = "RECIPE UNKNOWN (schema-1 records: no deviations field)"


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _owner_gone(rec: dict[str, Any]) -> bool:
    """A `running` record whose process is gone: the engine marks it (``stale``), or its owner (pid on this
    host) no longer exists. A record without owner information is not called stale."""
    if rec.get("status") != "running":
        return False
    if rec.get("_stale") or rec.get("stale"):  # engine.record.iter_records says so (owner pid and start time)
        return True
    owner = rec.get("owner") or {}
    pid, host = owner.get("pid", rec.get("pid")), owner.get("host", rec.get("host"))
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _on_cuda(rec: dict[str, Any]) -> bool:
    return not str(rec.get("device") or "cpu").lower().startswith("cpu")


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    hp = rec.get("hparams") or {}
    timing = rec.get("timing") or {}
    metric = rec.get("metric") or {}
    devs = rec.get("deviations")
    row = {
        "run_id": rec.get("run_id"),
        "key": rec.get("key"),
        "task": rec.get("task"),
        "task_family": rec.get("task_family"),
        "optim": rec.get("optim"),
        "seed": rec.get("seed"),
        "scale": rec.get("scale") or "unknown",
        "data_source": rec.get("data_source") or "unknown",
        "status": rec.get("status"),
        "stale": _owner_gone(rec),
        # a sorted tuple of "dotted.key=value" (empty: exactly the profile's recipe); None: recipe unknown
        "deviations": tuple(sorted(map(str, devs))) if isinstance(devs, list) else None,
        "metric_name": metric.get("name"),
        "higher_is_better": metric.get("higher_is_better"),
        "best_metric": _num(rec.get("best_metric")),
        "final_metric": _num(rec.get("final_metric")),
        # one meaning per name: resident process memory, and tensor memory held by the CUDA allocator. Schema 1
        # had one field, peak_memory_mb, meaning the first on CPU and the second on CUDA.
        "peak_rss_mb": _num(rec.get("peak_rss_mb", None if _on_cuda(rec) else rec.get("peak_memory_mb"))),
        "peak_tensor_mb": _num(rec.get("peak_tensor_mb", rec.get("peak_memory_mb") if _on_cuda(rec) else None)),
        "device": rec.get("device"),
        "n_evals": len(rec.get("history") or []),
        "started_at": rec.get("started_at"),
        "finished_at": rec.get("finished_at"),
        "error": rec.get("error") if isinstance(rec.get("error"), str) else None,
        "path": rec.get("_path"),
        "mtime": os.stat(rec["_path"]).st_mtime_ns if rec.get("_path") and os.path.exists(rec["_path"]) else 0,
        "config": rec.get("config") or {},
    }
    for k in TIMING:
        row[k] = _num(timing.get(k))
    # every scalar hyperparameter the record holds, as recorded (numbers as floats); lists (betas) stay out
    for k, v in hp.items():
        if _is_scalar(v) and k not in row:
            row[k] = _num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    return row


def hparam_columns(df: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a runs frame (those of runs_frame's records)."""
    return list(df.attrs.get("hparams", SWEPT_HPARAMS))


def runs_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = [flatten(r) for r in records]
    hp = list(SWEPT_HPARAMS)
    for r in rows:
        hp += [k for k in r if k not in BASE_COLUMNS and k not in hp]
    df = pd.DataFrame(rows, columns=BASE_COLUMNS + hp)
    for k in SWEPT_HPARAMS:
        df[k] = pd.to_numeric(df[k], errors="coerce")
    if len(df):
        df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    df.attrs["hparams"] = hp
    return df


def load_runs(results_dir: str | Path, dedupe_runs: bool = True) -> pd.DataFrame:
    """Every record under ``results_dir/runs`` as one row; by default one row per experiment (see dedupe)."""
    df = runs_frame(iter_records(results_dir))
    return dedupe(df) if dedupe_runs else df


def _identity(df: pd.DataFrame) -> pd.Series:
    """The experiment a record belongs to: its key, or (for records without one) the fields a key hashes."""
    fields = ["task", "optim", "seed", "scale", "data_source", *hparam_columns(df)]
    fallback = df[fields].apply(lambda r: "|".join(map(str, r)), axis=1)
    return df["key"].where(df["key"].notna(), "nokey:" + fallback)


def dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment: a completed record wins over a diverged one, then running, failed, interrupted;
    among equals the latest started (then the latest written). ``n_attempts`` says how many records the experiment
    has."""
    if df.empty:
        return df.assign(n_attempts=pd.Series(dtype=int))
    df = df.copy()
    df["_id"] = _identity(df)
    prio = {s: i for i, s in enumerate(STATUS_PRIORITY)}
    df["_prio"] = df["status"].map(prio).fillna(len(prio))
    df["n_attempts"] = df.groupby("_id")["_id"].transform("size")
    df = df.sort_values(["_prio", "started_at", "mtime"], ascending=[True, False, False], na_position="last")
    df = df.drop_duplicates("_id", keep="first").drop(columns=["_id", "_prio"])
    return df.sort_values(["task", "optim", "seed"], na_position="last").reset_index(drop=True)


def recipe_of(deviations, axis: Iterable[str] = ()) -> tuple[str, ...] | None:
    """A run's deviations from its profile's recipe, less those of the keys in ``axis`` (a sweep's swept
    settings); None when the record cannot tell (schema 1)."""
    if deviations is None or (isinstance(deviations, float) and math.isnan(deviations)):
        return None
    return tuple(d for d in deviations if not on_axis(d, axis))


def on_axis(deviation: str, axis: Iterable[str]) -> bool:
    """Whether a "dotted.key=value" deviation is of one of the ``axis`` keys (or inside one: task.schedule.name is
    on the axis task.schedule)."""
    key = deviation.split("=", 1)[0]
    return any(key == a or key.startswith(a + ".") for a in axis)


def recipe_label(recipe: tuple[str, ...] | None) -> str:
    """What a group of runs is, said in a title: '' for the profile's own recipe."""
    if recipe is None:
        return RECIPE_UNKNOWN
    return "" if not recipe else "modified recipe: " + ", ".join(recipe)


def recipe_suffix(recipe: tuple[str, ...] | None) -> str:
    """File-name suffix of a recipe variant: none for the profile's recipe, a short stable hash otherwise."""
    if recipe is None:
        return "_recipe-unknown"
    if not recipe:
        return ""
    return "_modified-" + hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:6]


def load_history(results_dir: str | Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-evaluation rows (epoch, step, metric, losses, ...) of the given runs (default: every deduped run),
    with the run's task, optim, seed, scale, data_source, status and hparams attached."""
    records = {r["_path"]: r for r in iter_records(results_dir)}
    if runs is None:
        runs = dedupe(runs_frame(records.values()))
    rows = []
    keep = ["run_id", "task", "optim", "seed", "scale", "data_source", "status", "metric_name",
            *hparam_columns(runs)]
    # Rows as dicts, not itertuples: hyperparameter columns may be dotted (per_set.embeddings.lr), which namedtuples
    # cannot carry as attributes.
    for run in runs.to_dict("records"):
        rec = records.get(run["path"])
        if rec is None:
            continue
        meta = {k: run[k] for k in keep}
        for i, h in enumerate(rec.get("history") or []):
            row = dict(meta)
            row["eval_index"] = i
            row.update(h)
            if run["metric_name"] and run["metric_name"] in h:
                row["metric"] = _num(h[run["metric_name"]])
            rows.append(row)
    return pd.DataFrame(rows)


def profile_suffix(scale: str, data_source: str | None) -> str:
    """File-name suffix of a (scale, data source) profile: none for real data at paper scale."""
    parts = [] if scale == "paper" else [str(scale)]
    if data_source not in (None, "real") and not (isinstance(data_source, float) and math.isnan(data_source)):
        parts.append(str(data_source))
    return "".join(f"_{p}" for p in parts)


def profile_banner(scale: str, data_source: str | None) -> str:
    """Said in every title that is not paper-scale on real data, so nobody mistakes it for paper numbers."""
    bits = []
    if scale != "paper":
        bits.append(f"{str(scale).upper()} SCALE")
    if data_source not in (None, "real"):
        bits.append(f"{data_source} data")
    if not bits:
        return ""
    return " / ".join(bits) + " - NOT comparable with the published numbers"


def profiles(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The (scale, data_source) pairs present, paper/real first."""
    if df.empty:
        return []
    pairs = {(str(s), str(d)) for s, d in zip(df["scale"], df["data_source"])}
    return sorted(pairs, key=lambda p: (p != ("paper", "real"), p))


def select(df: pd.DataFrame, **eq: Any) -> pd.DataFrame:
    """Rows where each column equals the value (None/NaN matches a missing value)."""
    mask = pd.Series(True, index=df.index)
    for col, val in eq.items():
        if val is None or (isinstance(val, float) and math.isnan(val)):
            mask &= df[col].isna()
        elif isinstance(val, (list, tuple, set)):
            mask &= df[col].isin(list(val))
        else:
            mask &= df[col] == val
    return df[mask]
