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
# # AdaHessian suite: training curves and the comparison tables
#
# Reads the run records under `RESULTS_DIR/runs` (default `results/`; set the environment variable
# `RESULTS_DIR` to read another results set, e.g. `results/demo`) and the tables that `make tables` wrote to
# `RESULTS_DIR/tables`. Figures go to `FIGURES_DIR` (default `RESULTS_DIR/figures/notebooks`).
# Anything not at paper scale on real data carries a banner in its title: it is not comparable with the paper.

# %%
import os
from pathlib import Path

ROOT = Path.cwd()
while not (ROOT / "conf").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from scripts.report import paper as P  # noqa: E402
from scripts.report.defaults import at_defaults, hydra_defaults  # noqa: E402
from scripts.report.figures import curve_column  # noqa: E402
from scripts.report.records import load_history, load_runs, profile_banner, profile_suffix, profiles  # noqa: E402

RESULTS_DIR = Path(os.environ.get("RESULTS_DIR", ROOT / "results"))
TABLES_DIR = Path(os.environ.get("TABLES_DIR", RESULTS_DIR / "tables"))
FIGURES_DIR = Path(os.environ.get("FIGURES_DIR", RESULTS_DIR / "figures" / "notebooks"))
FIGURES_DIR.mkdir(parents=True, exist_ok=True)
print("results:", RESULTS_DIR, "| figures:", FIGURES_DIR)

# %% [markdown]
# ## The runs
# One row per experiment (a re-run of the same experiment counts once: completed wins over failed).

# %%
runs = load_runs(RESULTS_DIR)
print(f"{len(runs)} runs")
if len(runs):
    display(runs.groupby(["scale", "data_source", "task", "optim", "status"]).size().rename("runs").reset_index())

# %% [markdown]
# ## Training curves per optimizer
# The evaluation metric after each epoch, mean ± std over seeds, at each task's default hyperparameters
# (the runs of LR/block/N sweeps are left out).

# %%
defaults = hydra_defaults()
curves = []
if len(runs):
    base = at_defaults(runs, defaults)
    hist = load_history(RESULTS_DIR, base)
    for scale, source in profiles(base):
        banner = profile_banner(scale, source)
        sel = hist[(hist["scale"] == scale) & (hist["data_source"] == source)]
        for task in sorted(sel["task"].unique()):
            h = sel[sel["task"] == task]
            # the metric when evaluated every epoch, else the validation loss (translation: BLEU once at the end)
            col, ylabel = curve_column(h)
            h = h[h[col].notna()].assign(metric=lambda d: d[col].astype(float))
            x = "epoch" if "epoch" in h and h["epoch"].notna().any() else "eval_index"
            fig, ax = plt.subplots(figsize=(6, 4))
            for optim in sorted(h["optim"].unique(), key=P.optim_sort_key):
                g = h[h["optim"] == optim].groupby(x)["metric"].agg(["mean", "std"]).reset_index()
                ax.plot(g[x], g["mean"], marker="o", label=P.optim_label(optim))
                ax.fill_between(g[x], g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), alpha=0.2)
            info = P.task_info(task)
            title = f"{info['label']}: {ylabel} per epoch"
            ax.set_title((banner + ":\n" if banner else "") + title, fontsize=9)
            ax.set_xlabel(x)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = FIGURES_DIR / f"nb_curves_{task}{profile_suffix(scale, source)}.png"
            fig.savefig(path, dpi=100)
            curves.append(path)
            plt.show()
            plt.close(fig)
print("wrote", [p.name for p in curves])

# %% [markdown]
# ## The comparison tables (Tables 2, 3, 4 and the DLRM figure)
# As written by `make tables`: ours (mean ± std over seeds, n), the published value and the difference;
# significance of AdaHessian vs the best baseline where both have 3+ seeds.

# %%
tables = sorted(TABLES_DIR.glob("table[234]_*.md")) + sorted(TABLES_DIR.glob("fig6_dlrm*.md"))
for path in tables:
    display(Markdown(path.read_text()))
print(f"{len(tables)} tables")

# %% [markdown]
# ## Ours minus published, per task and optimizer
# From the tables' CSVs: a bar per (task, optimizer) with a completed run.

# %%
diffs = []
for path in sorted(TABLES_DIR.glob("table[234]_*.csv")) + sorted(TABLES_DIR.glob("fig6_dlrm*.csv")):
    df = pd.read_csv(path)
    df = df[df["n"] > 0]
    if len(df):
        diffs.append(df.assign(file=path.stem))
if diffs:
    d = pd.concat(diffs)
    for stem, g in d.groupby("file"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = [f"{r.label}\n{P.optim_label(r.optim)}" for r in g.itertuples()]
        ax.bar(range(len(g)), g["diff"], color=["tab:red" if o == "adahessian" else "tab:gray" for o in g["optim"]])
        ax.set_xticks(range(len(g)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("ours - published")
        s, src = g["scale"].iloc[0], g["data_source"].iloc[0]
        banner = profile_banner(s, src)
        ax.set_title((banner + ":\n" if banner else "") + f"{stem}: difference to the paper", fontsize=9)
        fig.tight_layout()
        path = FIGURES_DIR / f"nb_diff_{stem}.png"
        fig.savefig(path, dpi=100)
        plt.show()
        plt.close(fig)
        print("wrote", path.name)
