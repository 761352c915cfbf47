"""Tables in the paper's layouts, built from run records: 2 (vision), 3 (translation), 4 (LM), the DLRM figure's
numbers, 6 (LR robustness), 7 (block size) and the accuracy half of 8 (Hessian every N steps)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import paper as P
from .defaults import DefaultsFn, at_defaults
from .records import (
    STATUS_PRIORITY,
    on_axis,
    profile_banner,
    profile_suffix,
    recipe_label,
    recipe_of,
    recipe_suffix,
    select,
)
from .render import DELTA, Table, finite, fmt_diff, fmt_mean_std, fmt_ours
from .stats import sig_mark, summarize, welch

FMTS = ("md", "tex")
MIN_N_TEST = 3


STAT_FIELDS = ["n", "mean", "std", "sem", "n_diverged", "n_failed", "n_interrupted", "n_unfinished", "n_stale",
               "n_no_metric", "n_total", "seeds", "values"]


def title_of(base: str, scale: str, data_source: str, recipe: tuple | None = ()) -> str:
    banner = profile_banner(scale, data_source)
    what = recipe_label(recipe)
    if what:  # not the profile's recipe: say what it is, whatever the scale
        banner = f"{banner} / {what}" if banner else f"{what} - NOT the paper's recipe"
    return f"{banner}: {base}" if banner else base


def _recipes(runs: pd.DataFrame, axis=()) -> pd.Series:
    """Each run's recipe variant (its deviations less the ``axis`` keys; None: unknown), as a Series."""
    return pd.Series([recipe_of(d, axis) for d in runs["deviations"]], index=runs.index, dtype=object)


def in_recipe(runs: pd.DataFrame, recipe, defaults: DefaultsFn, axis=(), vary=None) -> pd.DataFrame:
    """The runs of one recipe variant. Records that say their deviations are taken at their word; records that
    cannot (schema 1, ``recipe`` None) are placed by the old test: swept hyperparameters at their conf/ defaults."""
    if runs.empty:
        return runs
    rec = _recipes(runs, axis)
    sel = runs[rec.map(lambda r: fits_recipe(r, recipe))]
    return at_defaults(sel, defaults, vary=vary) if recipe is None else sel


def fits_recipe(r: tuple | None, recipe) -> bool:
    """Whether a run's recipe ``r`` is ``recipe``: a tuple (exactly these deviations), None (unknown), or a
    frozenset of keys (any deviations of these keys only: the runs of a sweep given overrides of these keys)."""
    if recipe is None or r is None:
        return recipe is None and r is None
    if isinstance(recipe, frozenset):
        return all(d.split("=", 1)[0] in recipe for d in r)
    return r == tuple(recipe)


def recipe_seen(runs: pd.DataFrame, recipe, axis=()) -> tuple | None:
    """What a selection's recipe is, for its title: a frozenset of keys becomes the deviations the runs hold."""
    if not isinstance(recipe, frozenset):
        return recipe
    return tuple(sorted({d for r in _recipes(runs, axis) if r for d in r}))


def _excluded_notes(others: pd.DataFrame, scale: str, axis=(), sweep_axes=()) -> list[str]:
    """One line naming the runs of these tasks that are not in this table, and why."""
    if others.empty:
        return []
    rec = _recipes(others, axis)
    sweeps = rec.map(lambda r: r is not None and any(on_axis(d, sweep_axes) for d in r))
    lines = []
    if sweeps.any():
        lines.append(f"{int(sweeps.sum())} run(s) of sweeps (a swept setting differs from the recipe) are in the "
                     "sweep tables, not here.")
    rest = others[~sweeps]
    if len(rest):
        items = []
        for r, why in zip(rest.itertuples(), rec[~sweeps]):
            what = recipe_label(why) if why is not None else "recipe unknown"
            items.append(f"{r.task}/{r.optim} seed {r.seed} (run {r.run_id}, {r.status}): {what}")
        lines.append(f"Excluded: {len(rest)} run(s) that are not the {scale} recipe (each is in the table of its "
                     "own recipe, titled with it): " + "; ".join(items) + ".")
    return lines


def _stat_row(summ: pd.DataFrame, **eq) -> dict | None:
    rows = select(summ, **eq)
    return None if rows.empty else rows.iloc[0].to_dict()


def _failed_notes(runs: pd.DataFrame, param: str | None = None) -> list[str]:
    """One line per failed, interrupted or unfinished run: what it was, its run id and the error's last line."""
    notes = []
    for r in runs[runs["status"].isin(["failed", "interrupted", "running"])].itertuples():
        err = (r.error if isinstance(r.error, str) else "").strip().splitlines()
        why = f": {err[-1][:160]}" if err else ""
        val = getattr(r, param, None) if param else None
        at = f" {param}={float(val):g}" if finite(val) else ""
        if r.status != "running":
            state = r.status
        elif getattr(r, "stale", False) is True:
            state = "stale (recorded as running, but its process is gone; resume=true continues it)"
        else:
            state = "unfinished (running)"
        notes.append(f"{state}: {r.task}/{r.optim}{at} seed {r.seed} (run {r.run_id}){why}")
    return notes


def one_per_seed(sel: pd.DataFrame, cell: list[str]) -> tuple[pd.DataFrame, int]:
    """At most one run per seed in a table cell. Records of different experiments (keys) can land in one cell
    (e.g. an lr_scale given as 1 and as 1.0, or the same hyperparameters with another data setting); a seed must
    still count once: the completed one wins, then diverged, running, failed, interrupted; latest first.
    Returns the runs kept and how many were left out."""
    if sel.empty:
        return sel, 0
    prio = {s: i for i, s in enumerate(STATUS_PRIORITY)}
    ordered = sel.assign(_p=sel["status"].map(prio).fillna(len(prio)))
    ordered = ordered.sort_values(["_p", "started_at", "mtime"], ascending=[True, False, False], na_position="last")
    kept = ordered.drop_duplicates([*cell, "seed"], keep="first").drop(columns="_p")
    return kept.sort_index(), len(sel) - len(kept)


def _dup_note(n: int) -> list[str]:
    return [f"{n} more record(s) of a seed already counted in the same cell were left out (same hyperparameters, "
            "another experiment key: e.g. a value given as 1 and as 1.0, or another data/trainer setting)."
            ] if n else []


# ----------------------------------------------------------------------------------------------------------
# Tables 2, 3, 4 and the DLRM figure
# ----------------------------------------------------------------------------------------------------------
def _better_alternative(sel: pd.DataFrame, task: str, info: dict) -> tuple[pd.DataFrame, dict, list[str]]:
    """The paper's rule where it ran a setting both ways (ImageNet: step vs plateau decay, Sec. IV-B): per
    optimizer, the runs of the variant with the better mean. Returns those runs, optimizer -> variant, and a note."""
    alt = P.ALTERNATIVES[task]
    if sel.empty:
        return sel, {}, []
    sel = sel.assign(variant=[alt["label"](c if isinstance(c, dict) else {}) for c in sel["config"]])
    kept, _ = one_per_seed(sel, ["optim", "variant"])
    summ = summarize(kept, ["optim", "variant"])
    hib = bool(info["higher_is_better"])
    chosen, parts = {}, []
    for optim, g in summ.groupby("optim"):
        done = g[g["n"] > 0].sort_values("mean", ascending=not hib)
        best = done.iloc[0]["variant"] if len(done) else None
        chosen[optim] = best
        said = ", ".join(f"{r.variant} {r.mean:.{info['decimals']}f} (n={r.n})" if r.n else f"{r.variant} no result"
                         for r in g.itertuples())
        parts.append(f"{P.optim_label(optim)}: {said}" + (f" -> {best}" if best is not None else ""))
    keep = sel[[chosen.get(o) in (None, v) for o, v in zip(sel["optim"], sel["variant"])]]
    note = (f"{info['label']}: the better of the {alt['axis']} variants per optimizer, as the paper (Sec. IV-B); "
            "the cell names the one shown: " + "; ".join(parts) + ".")
    return keep, chosen, [note]


def _variant_tag(variant) -> str:
    """' (plateau)' after a cell of a task run both ways; nothing elsewhere."""
    return f" ({variant})" if isinstance(variant, str) else ""


def comparison_table(runs: pd.DataFrame, table: str, *, scale: str, data_source: str, defaults: DefaultsFn,
                     paper_dir=None, min_n: int = MIN_N_TEST, recipe: tuple | None = ()) -> Table:
    """Rows: optimizers; per task three columns: ours (mean ± std over seeds, n), the published value, and the
    difference. AdaHessian is marked when Welch's t-test against the best baseline gives p < 0.05 (*) or
    p < 0.01 (**), run only when both have ``min_n`` or more seeds.

    Only runs of ``recipe`` enter: () = exactly the profile's recipe (the record's deviations are empty), a tuple
    of deviations = that modified recipe, None = records that cannot say (schema 1). Every other run of these
    tasks is named in the notes with the reason."""
    table = str(table)
    name, base_title = P.TABLES[table]
    tasks = P.tasks_of_table(table, paper_dir)
    pub = P.published_results(paper_dir)
    pub = pub[pub["table"] == table]
    prof = runs[(runs["scale"] == scale) & (runs["data_source"] == data_source) & runs["task"].isin(tasks)]
    parts, others, alt_notes, variants = [], [], [], {}
    for task, grp in prof.groupby("task"):
        axis = P.alternative_axes(task)
        part = in_recipe(grp, recipe, defaults, axis=axis)
        others.append(grp.drop(part.index))
        if axis:
            part, chosen, note = _better_alternative(part, task, P.task_info(task, paper_dir))
            variants.update({(task, o): v for o, v in chosen.items() if v is not None})
            alt_notes += note
        parts.append(part)
    sel = pd.concat(parts) if parts else prof
    sel, n_dup = one_per_seed(sel, ["task", "optim"])
    summ = summarize(sel, ["task", "optim"])
    excluded = _excluded_notes(pd.concat(others) if others else prof.iloc[:0], scale, sweep_axes=SWEEP_AXES)

    optims = sorted(set(pub["optim"]) | set(summ["optim"]), key=P.optim_sort_key)
    rows, notes, missing = [], [], []
    for task in tasks:
        info = P.task_info(task, paper_dir)
        hib = bool(info["higher_is_better"])
        # best baseline by mean over completed runs
        cand = summ[(summ["task"] == task) & ~summ["optim"].isin(P.BASELINE_EXCLUDE) & (summ["n"] > 0)]
        baseline = None
        if len(cand):
            baseline = cand.sort_values("mean", ascending=not hib).iloc[0]
        ah = _stat_row(summ, task=task, optim="adahessian")
        t_stat = p_val = math.nan
        if baseline is not None and ah is not None:
            t_stat, p_val = welch(ah["values"], baseline["values"], min_n)
            label = P.optim_label(baseline["optim"])
            if finite(p_val):
                diff = ah["mean"] - baseline["mean"]
                better = (diff > 0) == hib
                notes.append(f"{info['label']}: AdaHessian vs best baseline {label}, Welch's t-test: t = {t_stat:.2f}, "
                             f"p = {p_val:.3g} (n = {ah['n']} vs {baseline['n']}); AdaHessian "
                             f"{'better' if better else 'worse'} by {abs(diff):.{info['decimals']}f}"
                             f"{'' if p_val < 0.05 else ', not significant at 0.05'}.")
            else:
                notes.append(f"{info['label']}: no significance test (AdaHessian n = {ah['n']}, best baseline "
                             f"{label} n = {baseline['n']}; both need {min_n} or more seeds).")
        for optim in optims:
            st = _stat_row(summ, task=task, optim=optim)
            pr = select(pub, task=task, optim=optim)
            pr = pr.iloc[0] if len(pr) else None
            has_ours = st is not None and st["n_total"] > 0
            if not has_ours and pr is not None:
                missing.append(f"{info['label']} / {P.optim_label(optim)}")
            row = {
                "table": table, "task": task, "label": info["label"], "paper_task": info["paper_task"],
                "model": info["model"], "optim": optim, "metric": info["metric"], "higher_is_better": hib,
                "scale": scale, "data_source": data_source,
            }
            for c in STAT_FIELDS:
                empty = 0 if c.startswith("n") else [] if c in ("seeds", "values") else math.nan
                row[c] = st[c] if st is not None else empty
            row["variant"] = variants.get((task, optim))
            row["paper_mean"] = pr["mean"] if pr is not None else math.nan
            row["paper_std"] = pr["std"] if pr is not None else math.nan
            row["paper_n"] = pr["n_runs"] if pr is not None else math.nan
            row["diff"] = row["mean"] - row["paper_mean"] if row["n"] else math.nan
            is_ah = optim == "adahessian"
            row["baseline"] = baseline["optim"] if (is_ah and baseline is not None) else None
            row["t_stat"] = t_stat if is_ah else math.nan
            row["p_value"] = p_val if is_ah else math.nan
            row["significant"] = bool(is_ah and finite(p_val) and p_val < 0.05)
            rows.append(row)
    data = pd.DataFrame(rows)

    disp = {f: {"Optimizer": [P.optim_label(o) for o in optims]} for f in FMTS}
    for task in tasks:
        info = P.task_info(task, paper_dir)
        d = info["decimals"]
        sub = data[data["task"] == task].set_index("optim")
        for f in FMTS:
            disp[f][info["label"]] = [fmt_ours(sub.loc[o], d, f, sig_mark(sub.loc[o, "p_value"]))
                                      + _variant_tag(sub.loc[o, "variant"]) for o in optims]
            disp[f][f"{info['label']} paper"] = [fmt_mean_std(sub.loc[o, "paper_mean"], sub.loc[o, "paper_std"], d, f)
                                                  for o in optims]
            disp[f][f"{info['label']} {DELTA['md']}"] = [fmt_diff(sub.loc[o, "diff"], d, f) for o in optims]
    md, tex = (pd.DataFrame(disp[f]) for f in FMTS)

    metric = P.task_info(tasks[0], paper_dir)["metric"] if tasks else "metric"
    head = [
        f"Ours: mean ± sample std (ddof=1) over seeds of best_metric ({metric}) of completed runs at the default "
        f"hyperparameters, n = completed runs; diverged/failed runs are counted in brackets and never averaged; "
        f"'missing' = no run record. paper: the published value; {DELTA['md']} = ours - paper.",
        "* p < 0.05, ** p < 0.01: Welch's t-test of AdaHessian vs the best baseline (by mean), "
        f"only when both have {min_n}+ seeds.",
    ]
    if missing:
        head.append("Missing runs (no record): " + "; ".join(missing) + ".")
    notes = head + alt_notes + notes + _dup_note(n_dup) + _failed_notes(sel) + excluded
    return Table(name + profile_suffix(scale, data_source) + recipe_suffix(recipe),
                 title_of(base_title, scale, data_source, recipe), data, md, tex, notes)


# ----------------------------------------------------------------------------------------------------------
# Sweeps: Table 6 (lr_scale), Table 7 (block_size), Table 8 accuracy (update_each)
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepKind:
    kind: str
    param: str           # record hparam / Hydra override optim.<param>
    axis: tuple          # the settings a run of this sweep may change from its recipe ("dotted.key" of deviations)
    values: tuple        # the paper's grid
    table: str
    title: str
    value_label: str

    def fmt_value(self, v) -> str:
        v = float(v)
        s = f"{v:g}"
        return {"lr": f"{s}x", "block": f"b={s}", "every": f"N={s}"}[self.kind]

    def optimizers(self, paper_dir=None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(swept, reference) optimizers of the paper's study, from its published numbers (results/paper/): the
        LR study's optimizers; the block study's AdaHessian rows and its reference row (no block size); the
        every-N study's (AdaHessian)."""
        key = P.optim_sort_key
        if self.kind == "lr":
            return tuple(sorted(set(P.published_lr(paper_dir)["optim"]), key=key)), ()
        if self.kind == "block":
            pub = P.published_block(paper_dir)
            ref = pub["block_size"].isna()
            return (tuple(sorted(set(pub[~ref]["optim"]), key=key)), tuple(sorted(set(pub[ref]["optim"]), key=key)))
        return tuple(sorted(set(P.published_frequency(paper_dir).get("optimizer", ["adahessian"])), key=key)), ()


KINDS = {
    "lr": SweepKind("lr", "lr_scale", ("optim.lr_scale",), (0.5, 1, 2, 3, 4, 5, 6, 10), "6",
                    "Table 6: robustness to the learning rate (multiples of each optimizer's own base lr)",
                    "lr multiplier"),
    "block": SweepKind("block", "block_size", ("optim.block_size",), (1, 2, 4, 8, 16, 32, 64, 128), "7",
                       "Table 7: AdaHessian block size (spatial averaging) with the AdamW reference", "block size"),
    # App. D(f): the Hessian every step for the first 5 epochs, then every N (hessian_warmup_steps)
    "every": SweepKind("every", "update_each", ("optim.update_each", "optim.hessian_warmup_steps"), (1, 2, 3, 4, 5),
                       "8", "Table 8 (metric): AdaHessian with the Hessian computed every N steps (every step for "
                       "the first 5 epochs)", "Hessian every N"),
}
# Every setting some sweep varies: runs that differ from their recipe only there belong to the sweep tables.
SWEEP_AXES = tuple(a for k in KINDS.values() for a in k.axis)


def _published_sweep(kind: SweepKind, task: str, paper_dir) -> pd.DataFrame:
    """Columns optim, value, mean, std, status for the task (empty when the paper has none for it)."""
    if kind.kind == "lr":
        pub = P.published_lr(paper_dir)
        pub = pub[pub["task"] == task].assign(value=lambda d: d["lr_scale"].astype(float))
    elif kind.kind == "block":
        pub = P.published_block(paper_dir)
        pub = pub[pub["task"] == task].assign(value=lambda d: d["block_size"].astype(float), status="ok")
    else:
        pub = P.published_frequency(paper_dir)
        pub = pub[pub["task"] == task].assign(optim="adahessian", value=lambda d: d["every_n_steps"].astype(float),
                                              mean=lambda d: d["top1_acc_mean"], std=lambda d: d["top1_acc_std"],
                                              status="ok")
    return pub[["optim", "value", "mean", "std", "status"]] if len(pub) else pd.DataFrame(
        columns=["optim", "value", "mean", "std", "status"])


def sweep_selection(runs: pd.DataFrame, kind: SweepKind, *, task: str, scale: str, data_source: str,
                    defaults: DefaultsFn, optims=None, reference=None, recipe: tuple | None = ()) -> pd.DataFrame:
    """The runs of a sweep: swept optimizers whose recipe differs only on the sweep's axis, plus the reference
    optimizers at their recipe (``recipe``: () the profile's own, or a modified one; None: records that cannot
    say, placed by their swept hyperparameters' conf/ defaults). Column ``value`` holds the swept value (NaN for
    the reference); ``attrs["others"]`` the other runs of these optimizers on the task (for the notes)."""
    d_optims, d_ref = kind.optimizers()
    optims = tuple(optims or d_optims)
    reference = tuple(d_ref if reference is None else reference)
    base = runs[(runs["task"] == task) & (runs["scale"] == scale) & (runs["data_source"] == data_source)]
    base = base[base["optim"].isin(optims + reference)]
    swept = in_recipe(base[base["optim"].isin(optims)], recipe, defaults, axis=kind.axis, vary=kind.param)
    swept = swept.assign(value=swept[kind.param].astype(float), role="swept")
    ref = in_recipe(base[base["optim"].isin(reference) & ~base["optim"].isin(optims)], recipe, defaults)
    ref = ref.assign(value=np.nan, role="reference")
    others = base.drop(list(swept.index) + list(ref.index))
    both = pd.concat([swept, ref], ignore_index=True)
    kept, n_dup = one_per_seed(both, ["optim", "role", "value"])
    kept.attrs["n_duplicates"] = n_dup
    kept.attrs["others"] = others
    return kept


def expected_missing(sel: pd.DataFrame, kind: SweepKind, *, optims, values, reference, seeds) -> list[tuple]:
    """(optim, value, seed) of the planned grid that has no record at all (value None for a reference run)."""
    have = {(o, None if not finite(v) else float(v), int(s)) for o, v, s in zip(sel["optim"], sel["value"], sel["seed"])
            if pd.notna(s)}
    out = []
    for s in seeds:
        for o in optims:
            for v in values:
                if (o, float(v), int(s)) not in have:
                    out.append((o, float(v), int(s)))
        for o in reference:
            if (o, None, int(s)) not in have:
                out.append((o, None, int(s)))
    return out


def sweep_table(runs: pd.DataFrame, kind: str | SweepKind, *, task: str, scale: str, data_source: str,
                defaults: DefaultsFn, optims=None, values=None, reference=None, seeds=None,
                paper_dir=None, recipe: tuple | None = ()) -> tuple[Table, pd.DataFrame]:
    """The sweep in the paper's layout: one column per swept value (plus the reference optimizer), one row per
    optimizer, with the published row and the difference under it where the paper has numbers for this task.
    Returns the table and the per-(optim, value) summary (for the figure)."""
    kind = KINDS[kind] if isinstance(kind, str) else kind
    d_optims, d_ref = kind.optimizers(paper_dir)
    optims = tuple(optims or d_optims)
    reference = tuple(d_ref if reference is None else reference)
    values = tuple(float(v) for v in (values or kind.values))
    info = P.task_info(task, paper_dir)
    d = info["decimals"]
    sel = sweep_selection(runs, kind, task=task, scale=scale, data_source=data_source, defaults=defaults,
                          optims=optims, reference=reference, recipe=recipe)
    summ = summarize(sel, ["optim", "role", "value"])
    pub = _published_sweep(kind, task, paper_dir)
    has_pub = len(pub) > 0

    rows = []
    for o in [*optims, *reference]:
        role = "swept" if o in optims else "reference"
        for v in (values if role == "swept" else (math.nan,)):
            st = _stat_row(summ, optim=o, role=role, value=v)
            pr = select(pub, optim=o, value=v)
            pr = pr.iloc[0] if len(pr) else None
            row = {"task": task, "label": info["label"], "kind": kind.kind, "param": kind.param, "optim": o,
                   "role": role, "value": v, "scale": scale, "data_source": data_source}
            for c in STAT_FIELDS:
                empty = 0 if c.startswith("n") else [] if c in ("seeds", "values") else math.nan
                row[c] = st[c] if st is not None else empty
            row["paper_mean"] = pr["mean"] if pr is not None else math.nan
            row["paper_std"] = pr["std"] if pr is not None else math.nan
            row["paper_status"] = pr["status"] if pr is not None else None
            row["diff"] = row["mean"] - row["paper_mean"] if row["n"] else math.nan
            rows.append(row)
    data = pd.DataFrame(rows)

    cols = [kind.fmt_value(v) for v in values]
    ref_cols = [f"{P.optim_label(o)} (ref.)" for o in reference]
    disp = {}
    for f in FMTS:
        out = []
        for o in optims:
            sub = data[(data["optim"] == o) & (data["role"] == "swept")].set_index("value")
            lab = P.optim_label(o)
            ours = {"": lab, **{c: fmt_ours(sub.loc[v], d, f) for c, v in zip(cols, values)}}
            lines = [ours]
            if has_pub:
                def published(v):
                    if sub.loc[v, "paper_status"] == "diverged":
                        return "diverged"
                    return fmt_mean_std(sub.loc[v, "paper_mean"], sub.loc[v, "paper_std"], d, f)

                lines.append({"": f"{lab} paper", **{c: published(v) for c, v in zip(cols, values)}})
                lines.append({"": f"{lab} {DELTA['md']}",
                              **{c: fmt_diff(sub.loc[v, "diff"], d, f) for c, v in zip(cols, values)}})
            out += lines
        # reference optimizers: one column each, on the rows of the first swept optimizer's block
        for o, rc in zip(reference, ref_cols):
            r = data[(data["optim"] == o) & (data["role"] == "reference")].iloc[0]
            vals = [fmt_ours(r, d, f)]
            if has_pub:
                vals += [fmt_mean_std(r["paper_mean"], r["paper_std"], d, f), fmt_diff(r["diff"], d, f)]
            for i, line in enumerate(out):
                line[rc] = vals[i] if i < len(vals) else ""
        disp[f] = pd.DataFrame(out, columns=["", *cols, *ref_cols]).rename(columns={"": "Optimizer"})

    notes = [f"Metric: best_metric ({info['metric'] or 'metric'}) of {info['label']}; mean ± sample std over seeds of "
             "completed runs, n = completed runs; diverged/failed runs are counted in brackets, never averaged; "
             "'missing' = no run record."]
    if kind.kind == "lr":
        notes.append("Each optimizer's lr is its own base lr times the multiplier (optim.lr_scale).")
    if has_pub:
        notes.append(f"paper: the published value for this task; {DELTA['md']} = ours - paper.")
    else:
        notes.append("The paper publishes this study for another task; no published row for this one.")
    if seeds is not None:
        miss = expected_missing(sel, kind, optims=optims, values=values, reference=reference, seeds=seeds)
        if miss:
            notes.append(f"Missing runs ({len(miss)} of the planned grid, no record): " + "; ".join(
                f"{P.optim_label(o)} {kind.fmt_value(v) if v is not None else 'ref.'} seed {s}"
                for o, v, s in miss) + ".")
        else:
            notes.append(f"Every planned run has a record (seeds {', '.join(map(str, seeds))}).")
    notes += _dup_note(sel.attrs.get("n_duplicates", 0)) + _failed_notes(sel, kind.param)
    notes += _excluded_notes(sel.attrs.get("others", sel.iloc[:0]), scale, axis=kind.axis, sweep_axes=SWEEP_AXES)
    recipe = recipe_seen(sel, recipe, kind.axis)
    name = f"table{kind.table}_{kind.kind}_{task}{profile_suffix(scale, data_source)}{recipe_suffix(recipe)}"
    title = title_of(f"{kind.title}, {info['label']}", scale, data_source, recipe)
    return Table(name, title, data, disp["md"], disp["tex"], notes), data
