"""Mean, standard deviation and counts over seeds, and Welch's t-test.

Only ``completed`` runs with a finite metric enter the mean; diverged, failed, interrupted and unfinished runs
are counted in their own columns and shown beside the mean, never averaged in.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

STAT_COLUMNS = [
    "n", "mean", "std", "sem", "values", "seeds", "n_diverged", "n_failed", "n_interrupted", "n_unfinished",
    "n_stale", "n_no_metric", "n_total",
]


def _group_stats(g: pd.DataFrame, value: str) -> pd.Series:
    ok = g[(g["status"] == "completed") & np.isfinite(g[value].astype(float))]
    vals = ok[value].astype(float).to_numpy()
    n = len(vals)
    stale = g["stale"].fillna(False).astype(bool) if "stale" in g else pd.Series(False, index=g.index)
    std = float(np.std(vals, ddof=1)) if n >= 2 else math.nan  # sample std (n-1), as over seeds
    return pd.Series({
        "n": n,
        "mean": float(np.mean(vals)) if n else math.nan,
        "std": std,
        "sem": std / math.sqrt(n) if n >= 2 else math.nan,
        "values": [float(v) for v in vals],
        "seeds": sorted(int(s) for s in ok["seed"].dropna()),
        "n_diverged": int((g["status"] == "diverged").sum()),
        "n_failed": int((g["status"] == "failed").sum()),
        "n_interrupted": int((g["status"] == "interrupted").sum()),
        # running: still going (or killed too recently to tell); stale: running, but its process is gone
        "n_unfinished": int(((g["status"] == "running") & ~stale).sum()),
        "n_stale": int(((g["status"] == "running") & stale).sum()),
        "n_no_metric": int(((g["status"] == "completed") & ~np.isfinite(g[value].astype(float))).sum()),
        "n_total": len(g),
    })


def summarize(runs: pd.DataFrame, by: Sequence[str], value: str = "best_metric") -> pd.DataFrame:
    """One row per group of ``by``: n, mean, std (ddof=1), sem, the values and seeds, and status counts."""
    by = list(by)
    if runs.empty:
        return pd.DataFrame(columns=by + STAT_COLUMNS)
    out = runs.groupby(by, dropna=False, sort=True).apply(lambda g: _group_stats(g, value), include_groups=False)
    out = out.reset_index()
    for c in ["n", "n_diverged", "n_failed", "n_interrupted", "n_unfinished", "n_stale", "n_no_metric", "n_total"]:
        out[c] = out[c].astype(int)
    return out


def welch(a: Sequence[float], b: Sequence[float], min_n: int = 3) -> tuple[float, float]:
    """Welch's unequal-variance t-test of a vs b: (t, two-sided p); NaN when either has fewer than min_n."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < min_n or len(b) < min_n:
        return math.nan, math.nan
    res = sps.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def sig_mark(p: float) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""
