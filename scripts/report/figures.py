"""Figures (matplotlib, Agg): training curves, the LR and block sweeps, speed vs Hessian frequency, DLRM."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from . import paper as P  # noqa: E402
from .render import finite  # noqa: E402

# Smallest y-range of a metric axis, relative to the metric's size: differences of a few percent of the level (a
# smoke run at chance accuracy, seeds' noise) are not blown up into a figure-high "drop".
MIN_REL_SPAN = 0.05


def optim_color(name: str) -> str:
    """One colour per optimizer for every figure (scripts and notebooks): its place in the optimizer registry
    (optim.OPTIMIZERS) picks a colour of matplotlib's tab10 cycle; an optimizer outside the registry (an import
    path) gets one of the colours after the registered ones, stable for its name."""
    from optim import OPTIMIZERS

    cycle = plt.get_cmap("tab10").colors
    names = list(OPTIMIZERS)
    if name in names:
        i = names.index(name)
    else:
        spare = max(1, len(cycle) - len(names))
        i = len(names) + sum(map(ord, str(name))) % spare
    c = cycle[i % len(cycle)]
    return matplotlib.colors.to_hex(c)


def floor_y_span(ax, rel: float = MIN_REL_SPAN) -> None:
    """Widen the y-axis (about its middle) to at least ``rel`` times the largest |limit|."""
    lo, hi = ax.get_ylim()
    need = rel * max(abs(lo), abs(hi))
    if hi - lo < need:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - need / 2, mid + need / 2)


def integer_x(ax) -> None:
    """Epochs and N are counts: no fractional ticks."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _wrap(title: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(title, width))


def curve_column(h: pd.DataFrame) -> tuple[str, str]:
    """The column to draw over training: the metric when runs evaluate it more than once, else the validation loss
    (translation computes BLEU once, on the averaged checkpoint)."""
    per_run = h[h["metric"].notna()].groupby("run_id").size() if "metric" in h else pd.Series(dtype=int)
    if len(per_run) and per_run.max() > 1:
        return "metric", h["metric_name"].dropna().iloc[0]
    if "val_loss" in h and h[h["val_loss"].notna()].groupby("run_id").size().max() > 1:
        name = h["metric_name"].dropna().iloc[0] if h["metric_name"].notna().any() else "metric"
        # A run that validates on another split says so in its rows (the cpu-scale IWSLT14 curve is on test).
        split = h["val_subset"].dropna() if "val_subset" in h else pd.Series(dtype=object)
        column = f"{split.iloc[0]} loss" if len(split) else "val_loss"
        return "val_loss", f"{column} ({name} is evaluated once, at the end)"
    return "metric", h["metric_name"].dropna().iloc[0] if h["metric_name"].notna().any() else "metric"


def plot_curves(history: pd.DataFrame, task: str, title: str, path, x: str = "epoch", ylabel: str | None = None,
                published: pd.DataFrame | None = None) -> Path:
    """The evaluation metric over training, mean ± std band over seeds, one line per optimizer; dashed lines for
    the published final values when given (columns optim, mean)."""
    h = history[history["task"] == task].copy()
    y, ylab = curve_column(h)
    h = h[h[y].notna()].assign(metric=lambda d: d[y].astype(float))
    if x not in h.columns or h[x].isna().all():
        x = "eval_index"
    if y != "metric":
        published = None  # the published values are of the final metric, not of this curve
        ylabel = ylab
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for optim in sorted(h["optim"].unique(), key=P.optim_sort_key):
        g = h[h["optim"] == optim].groupby(x)["metric"].agg(["mean", "std", "count"]).reset_index()
        c = optim_color(optim)
        n_runs = h[h["optim"] == optim]["run_id"].nunique()
        ax.plot(g[x], g["mean"], marker="o", ms=3, color=c, label=f"{P.optim_label(optim)} (n={n_runs})")
        sd = g["std"].fillna(0.0)
        ax.fill_between(g[x], g["mean"] - sd, g["mean"] + sd, color=c, alpha=0.2, lw=0)
    if published is not None:
        # one legend entry per published line, and only for the optimizers drawn
        for r in published[published["optim"].isin(h["optim"].unique())].itertuples():
            if finite(r.mean):
                ax.axhline(r.mean, ls="--", lw=1, color=optim_color(r.optim), alpha=0.8,
                           label=f"{P.optim_label(r.optim)} published (final)")
    ax.set_xlabel(x.replace("_", " "))
    if (h[x] % 1 == 0).all():  # fractional epochs: evaluations inside an epoch (trainer.eval_every)
        integer_x(ax)
    floor_y_span(ax)
    ax.set_ylabel(ylabel or (h["metric_name"].dropna().iloc[0] if len(h) else "metric"))
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sweep(summary: pd.DataFrame, *, param_label: str, title: str, path, ylabel: str = "metric",
               logx: bool = True, base: float = 10, higher_is_better: bool | None = None) -> Path:
    """Metric vs the swept value, error bars = std over seeds; diverged runs marked with a red x at the value
    (and, where nothing converged, at the bottom of the axis); reference optimizers as horizontal bands; the
    published values dashed. ``summary`` is the data of :func:`build.sweep_table`."""
    s = summary
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    swept = s[s["role"] == "swept"]
    for optim in sorted(swept["optim"].unique(), key=P.optim_sort_key):
        g = swept[swept["optim"] == optim].sort_values("value")
        c = optim_color(optim)
        ok = g[g["n"] > 0]
        ax.errorbar(ok["value"], ok["mean"], yerr=ok["std"].fillna(0.0), marker="o", ms=4, capsize=3, color=c,
                    label=P.optim_label(optim))
        pub = g[g["paper_mean"].notna()]
        if len(pub) and len(ok):  # the published curve only beside one of ours
            ax.plot(pub["value"], pub["paper_mean"], ls="--", marker=".", color=c, alpha=0.6,
                    label=f"{P.optim_label(optim)} (published)")
    for r in s[s["role"] == "reference"].itertuples():
        c = optim_color(r.optim)
        if r.n > 0:
            ax.axhline(r.mean, color=c, lw=1.2, label=f"{P.optim_label(r.optim)} reference (n={r.n})")
            if finite(r.std):
                ax.axhspan(r.mean - r.std, r.mean + r.std, color=c, alpha=0.15)
        if finite(r.paper_mean) and r.n > 0:
            ax.axhline(r.paper_mean, color=c, ls="--", lw=1, alpha=0.6,
                       label=f"{P.optim_label(r.optim)} reference (published)")
    if logx:
        ax.set_xscale("log", base=base)
    ax.relim()
    ax.autoscale_view()
    floor_y_span(ax)
    ylo, yhi = ax.get_ylim()
    worst = yhi if higher_is_better is False else ylo  # where a diverged point is marked: the worst end
    # diverged: red x at the mean where some seeds converged, else on the worst edge
    div = swept[(swept["n_diverged"] > 0) | (swept["paper_status"] == "diverged")]
    first = True
    for r in div.itertuples():
        if r.n_diverged > 0:
            y = r.mean if r.n > 0 else worst
            ax.plot([r.value], [y], marker="x", ms=10, mew=2, color="red", ls="none",
                    label="diverged (ours)" if first else None, clip_on=False)
            ax.annotate(f"{r.n_diverged} div.", (r.value, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color="red")
            first = False
        if r.paper_status == "diverged":
            ax.plot([r.value], [worst], marker="x", ms=8, color="darkred", alpha=0.5, ls="none",
                    label="diverged (published)", clip_on=False)
    ax.set_ylim(ylo, yhi)
    vals = sorted(swept["value"].dropna().unique())
    ax.set_xticks(vals)
    ax.set_xticklabels([f"{v:g}" for v in vals])
    ax.minorticks_off()
    ax.set_xlabel(param_label)
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_speed(speed: pd.DataFrame, *, title: str, path, metric: pd.DataFrame | None = None,
               published: pd.DataFrame | None = None, ylabel_metric: str = "metric") -> Path:
    """Left: AdaHessian step time relative to SGD and Adam vs N (Hessian every N steps), with the theoretical
    cost 1 + 1/N and the published measurements. Right (when given): the metric reached at each N."""
    ncols = 2 if metric is not None and len(metric) and metric["n"].sum() > 0 else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.0 * ncols, 4.2), squeeze=False)
    ax = axes[0, 0]
    s = speed.sort_values("every_n")
    ax.plot(s["every_n"], s["x_sgd"], marker="o", color=optim_color("sgd"), label="measured / SGD")
    ax.plot(s["every_n"], s["x_adam"], marker="s", color=optim_color("adam"), label="measured / Adam")
    ns = np.arange(1, int(s["every_n"].max()) + 1)
    ax.plot(ns, 1 + 1 / ns, ls=":", color="k", label="theory 1 + 1/N (x SGD)")
    if published is not None and len(published):
        ax.plot(published["every_n_steps"], published["measured_x_sgd"], ls="--", marker=".",
                color=optim_color("sgd"), alpha=0.6, label="published / SGD")
        ax.plot(published["every_n_steps"], published["measured_x_adam"], ls="--", marker=".",
                color=optim_color("adam"), alpha=0.6, label="published / Adam")
    ax.set_xlabel("Hessian every N steps")
    ax.set_ylabel("AdaHessian step time relative to baseline")
    ax.set_xticks(ns)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if ncols == 2:
        ax2 = axes[0, 1]
        m = metric[metric["n"] > 0].sort_values("value")
        ax2.errorbar(m["value"], m["mean"], yerr=m["std"].fillna(0.0), marker="o", capsize=3,
                     color=optim_color("adahessian"), label="ours")
        if published is not None and len(published):
            ax2.errorbar(published["every_n_steps"], published["top1_acc_mean"], yerr=published["top1_acc_std"],
                         ls="--", marker=".", capsize=2, color="darkred", alpha=0.5, label="published")
        ax2.set_xlabel("Hessian every N steps")
        ax2.set_ylabel(ylabel_metric)
        ax2.set_xticks(ns)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
    fig.suptitle(_wrap(title, 110), fontsize=9)
    return _save(fig, path)
