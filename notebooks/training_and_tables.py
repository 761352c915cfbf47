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
from scripts.report.build import in_recipe, title_of  # noqa: E402
from scripts.report.defaults import hydra_defaults  # noqa: E402
from scripts.report.figures import curve_column, floor_y_span, integer_x, optim_color  # noqa: E402
from scripts.report.outputs import recipe_variants  # noqa: E402
from scripts.report.records import (  # noqa: E402
    load_history,
    load_runs,
    profile_banner,
    profile_suffix,
    profiles,
    recipe_suffix,
)

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
    hist_all = load_history(RESULTS_DIR, runs)
    for scale, source in profiles(runs):
        prof = runs[(runs["scale"] == scale) & (runs["data_source"] == source)]
        # one figure per recipe: the profile's own, and each modified one titled with what it changed
        for recipe in recipe_variants(prof):
            base = pd.concat([in_recipe(g, recipe, defaults, axis=P.alternative_axes(t))
                              for t, g in prof.groupby("task")])
            sel = hist_all[hist_all["run_id"].isin(base["run_id"])] if len(hist_all) else hist_all
            for task in sorted(sel["task"].unique()) if len(sel) else []:
                h = sel[sel["task"] == task]
                # the metric when evaluated every epoch, else the validation loss (translation: BLEU once, at the end)
                col, ylabel = curve_column(h)
                h = h[h[col].notna()].assign(metric=lambda d: d[col].astype(float))
                x = "epoch" if "epoch" in h and h["epoch"].notna().any() else "eval_index"
                fig, ax = plt.subplots(figsize=(6, 4))
                for optim in sorted(h["optim"].unique(), key=P.optim_sort_key):
                    g = h[h["optim"] == optim].groupby(x)["metric"].agg(["mean", "std"]).reset_index()
                    c = optim_color(optim)
                    ax.plot(g[x], g["mean"], marker="o", color=c, label=P.optim_label(optim))
                    ax.fill_between(g[x], g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), color=c,
                                    alpha=0.2)
                info = P.task_info(task)
                ax.set_title(title_of(f"{info['label']}: {ylabel} per epoch", scale, source, recipe), fontsize=9,
                             wrap=True)
                ax.set_xlabel(x)
                integer_x(ax)
                floor_y_span(ax)
                ax.set_ylabel(ylabel)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
                fig.tight_layout()
                path = FIGURES_DIR / f"nb_curves_{task}{profile_suffix(scale, source)}{recipe_suffix(recipe)}.png"
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
        ax.bar(range(len(g)), g["diff"], color=[optim_color(o) for o in g["optim"]])
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
