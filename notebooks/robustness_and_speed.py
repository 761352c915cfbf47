# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # AdaHessian suite: robustness to the learning rate and block size, and speed vs Hessian frequency
#
# Reads what `make sweep-lr`, `make sweep-block`, `make sweep-every` and `make speed` wrote to
# `RESULTS_DIR/tables` (Tables 6, 7, 8) and the run records under `RESULTS_DIR/runs`.
# Set `RESULTS_DIR` (default `results/`) and `FIGURES_DIR` (default `RESULTS_DIR/figures/notebooks`).

# %%
import os
from pathlib import Path

ROOT = Path.cwd()
while not (ROOT / "conf").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from scripts.report import paper as P  # noqa: E402
from scripts.report.figures import floor_y_span, optim_color  # noqa: E402
from scripts.report.records import profile_banner  # noqa: E402

RESULTS_DIR = Path(os.environ.get("RESULTS_DIR", ROOT / "results"))
TABLES_DIR = Path(os.environ.get("TABLES_DIR", RESULTS_DIR / "tables"))
FIGURES_DIR = Path(os.environ.get("FIGURES_DIR", RESULTS_DIR / "figures" / "notebooks"))
FIGURES_DIR.mkdir(parents=True, exist_ok=True)
print("results:", RESULTS_DIR, "| figures:", FIGURES_DIR)


# %%
def sweep_plot(csv: Path, xlabel: str, logbase: float | None) -> Path:
    """Metric vs swept value (error bars: std over seeds), diverged runs as red x, published values dashed."""
    df = pd.read_csv(csv)
    swept, ref = df[df["role"] == "swept"], df[df["role"] == "reference"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for optim, g in swept.groupby("optim"):
        g = g.sort_values("value")
        ok = g[g["n"] > 0]
        c = optim_color(optim)
        ax.errorbar(ok["value"], ok["mean"], yerr=ok["std"].fillna(0), marker="o", capsize=3, color=c,
                    label=P.optim_label(optim))
        if g["paper_mean"].notna().any() and len(ok):
            ax.plot(g["value"], g["paper_mean"], ls="--", alpha=0.6, color=c,
                    label=f"{P.optim_label(optim)} (published)")
        bad = g[g["n_diverged"] > 0]
        if len(bad):
            y = np.where(bad["n"] > 0, bad["mean"], np.nanmin(ok["mean"]) if len(ok) else 0.0)
            ax.plot(bad["value"], y, "x", color="red", ms=10, mew=2, label=f"{P.optim_label(optim)} diverged")
    for r in ref.itertuples():
        if r.n > 0:
            ax.axhline(r.mean, color=optim_color(r.optim), lw=1, label=f"{P.optim_label(r.optim)} reference")
    if logbase:
        ax.set_xscale("log", base=logbase)
    ax.set_xticks(sorted(swept["value"].unique()))
    ax.set_xticklabels([f"{v:g}" for v in sorted(swept["value"].unique())])
    ax.minorticks_off()
    floor_y_span(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best metric")
    banner = profile_banner(df["scale"].iloc[0], df["data_source"].iloc[0])
    ax.set_title((banner + ":\n" if banner else "") + f"{csv.stem}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = FIGURES_DIR / f"nb_{csv.stem}.png"
    fig.savefig(path, dpi=100)
    plt.show()
    plt.close(fig)
    return path


# %% [markdown]
# ## Table 6: robustness to the learning rate
# Each optimizer's own base lr times 0.5 ... 10.

# %%
written = []
for csv in sorted(TABLES_DIR.glob("table6_lr_*.csv")):
    display(Markdown(csv.with_suffix(".md").read_text()))
    written.append(sweep_plot(csv, "lr multiplier", 10))
print(f"{len(written)} LR sweeps")

# %% [markdown]
# ## Table 7: AdaHessian block size, with the AdamW reference

# %%
n_block = 0
for csv in sorted(TABLES_DIR.glob("table7_block_*.csv")):
    display(Markdown(csv.with_suffix(".md").read_text()))
    written.append(sweep_plot(csv, "block size", 2))
    n_block += 1
print(f"{n_block} block sweeps")

# %% [markdown]
# ## Table 8: cost and metric with the Hessian every N steps
# Step time relative to SGD and Adam, measured side by side on the device named in the title.

# %%
n_speed = 0
for csv in sorted(TABLES_DIR.glob("table8_speed_*.csv")):
    display(Markdown(csv.with_suffix(".md").read_text()))
    df = pd.read_csv(csv)
    ah = df[df["optim"] == "adahessian"].sort_values("every_n")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ah["every_n"], ah["x_sgd"], marker="o", color=optim_color("sgd"), label="x SGD (ours)")
    ax.plot(ah["every_n"], ah["x_adam"], marker="s", color=optim_color("adam"), label="x Adam (ours)")
    ax.plot(ah["every_n"], ah["theory_x_sgd"], ls=":", color="k", label="theory 1 + 1/N")
    if ah["paper_x_sgd"].notna().any():
        ax.plot(ah["every_n"], ah["paper_x_sgd"], ls="--", alpha=0.6, color=optim_color("sgd"),
                label="x SGD (published)")
        ax.plot(ah["every_n"], ah["paper_x_adam"], ls="--", alpha=0.6, color=optim_color("adam"),
                label="x Adam (published)")
    ax.set_xticks(sorted(ah["every_n"].unique()))
    banner = profile_banner(df["scale"].iloc[0], df["data_source"].iloc[0])
    ax.set_title((banner + ":\n" if banner else "") + f"step time vs N on {df['device'].iloc[0]}", fontsize=9)
    ax.set_xlabel("Hessian every N steps")
    ax.set_ylabel("relative step time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = FIGURES_DIR / f"nb_{csv.stem}.png"
    fig.savefig(path, dpi=100)
    written.append(path)
    plt.show()
    plt.close(fig)
    n_speed += 1
print(f"{n_speed} speed tables; wrote", [p.name for p in written])
