"""Writing every table and figure of ``make tables`` for one results directory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paper as P
from .build import SWEEP_AXES, comparison_table, in_recipe, title_of
from .defaults import DefaultsFn
from .figures import curve_column, plot_curves
from .records import load_history, load_runs, on_axis, profile_suffix, profiles, recipe_of, recipe_suffix


def recipe_variants(runs: pd.DataFrame) -> list[tuple | None]:
    """The recipes the runs hold that get comparison tables: the profile's own (always), every modified recipe
    that is not a sweep's point (a swept setting changed: those are in the sweep tables), and "unknown"
    (schema-1 records) if any.
    Deviations on a task's alternative axis (ImageNet's schedule) are part of its own table."""
    out: list[tuple | None] = [()]
    for task, dev in zip(runs["task"], runs["deviations"]):
        r = recipe_of(dev, P.alternative_axes(task))
        if r is not None and any(on_axis(d, SWEEP_AXES) for d in r):  # a sweep's point: in the sweep tables
            continue
        if r not in out:
            out.append(r)
    return sorted(out, key=lambda r: (r is None, r or ()))


def write_comparison(results_dir, tables_dir, figures_dir, defaults: DefaultsFn, *, scale=None, data_source=None,
                     paper_dir=None, runs: pd.DataFrame | None = None) -> list[Path]:
    """Tables 2, 3, 4 and the DLRM table for each (scale, data source) present (or the one asked for), and
    training-curve figures for every task with runs; returns the paths written."""
    runs = load_runs(results_dir) if runs is None else runs
    profs = profiles(runs)
    if scale is not None:
        default_source = data_source or ("real" if scale == "paper" else "synthetic")
        profs = [p for p in profs if p[0] == scale] or [(scale, default_source)]
    if data_source is not None:
        profs = [p for p in profs if p[1] == data_source]
    if not profs:
        profs = [("paper", "real")]
    written: list[Path] = []
    history = None
    for sc, ds in profs:
        prof = runs[(runs["scale"] == sc) & (runs["data_source"] == ds)]
        for recipe in recipe_variants(prof):
            for table in P.TABLES:
                t = comparison_table(runs, table, scale=sc, data_source=ds, defaults=defaults, paper_dir=paper_dir,
                                     recipe=recipe)
                written += t.write(tables_dir)
            sel = pd.concat([in_recipe(g, recipe, defaults, axis=P.alternative_axes(task))
                             for task, g in prof.groupby("task")]) if len(prof) else prof
            if sel.empty:
                continue
            if history is None:
                history = load_history(results_dir, runs)
            hist = history[history["run_id"].isin(sel["run_id"])] if len(history) else history
            for task in sorted(sel["task"].unique()):
                if hist.empty or hist[hist["task"] == task]["metric"].notna().sum() == 0:
                    continue
                info = P.task_info(task, paper_dir)
                pub = P.published_results(paper_dir)
                pub = pub[pub["task"] == task]
                is_dlrm = str(info["table"]) == "fig6"
                _, ylab = curve_column(hist[hist["task"] == task])
                base = (f"Figure 6: {info['label']}, test accuracy during training" if is_dlrm
                        else f"{info['label']}: {ylab} during training, mean ± std over seeds")
                name = (("fig6_dlrm" if is_dlrm else f"curves_{task}") + profile_suffix(sc, ds)
                        + recipe_suffix(recipe) + ".png")
                written.append(plot_curves(hist, task, title_of(base, sc, ds, recipe), Path(figures_dir) / name,
                                           published=pub))
    return written
