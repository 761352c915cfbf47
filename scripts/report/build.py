"""Tables in the paper's layouts, built from run records: 2 (vision), 3 (translation), 4 (LM), the DLRM figure's
numbers, 6 (LR robustness), 7 (block size) and the accuracy half of 8 (Hessian every N steps)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import paper as P
from .defaults import DefaultsFn, at_defaults
from .records import STATUS_PRIORITY, profile_banner, profile_suffix, select
from .render import DELTA, Table, finite, fmt_diff, fmt_mean_std, fmt_ours
from .stats import sig_mark, summarize, welch

FMTS = ("md", "tex")
MIN_N_TEST = 3


def _title(base: str, scale: str, data_source: str) -> str:
    banner = profile_banner(scale, data_source)
    return f"{banner}: {base}" if banner else base


def _stat_row(summ: pd.DataFrame, **eq) -> dict | None:
    rows = select(summ, **eq)
    return None if rows.empty else rows.iloc[0].to_dict()


def _failed_notes(runs: pd.DataFrame, param: str | None = None) -> list[str]:
    """One line per failed, interrupted or unfinished run: what it was, its run id and the error's last line."""
    notes = []
    for r in runs[runs["status"].isin(["failed", "interrupted", "running"])].itertuples():
        err = (r.error or "").strip().splitlines()
        why = f": {err[-1][:160]}" if err else ""
        val = getattr(r, param, None) if param else None
        at = f" {param}={float(val):g}" if finite(val) else ""
        state = "unfinished (running, or killed)" if r.status == "running" else r.status
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
def comparison_table(runs: pd.DataFrame, table: str, *, scale: str, data_source: str, defaults: DefaultsFn,
                     paper_dir=None, min_n: int = MIN_N_TEST) -> Table:
    """Rows: optimizers; per task three columns: ours (mean ± std over seeds, n), the published value, and the
    difference. AdaHessian is marked when Welch's t-test against the best baseline gives p < 0.05 (*) or
    p < 0.01 (**), run only when both have ``min_n`` or more seeds."""
    table = str(table)
    name, base_title = P.TABLES[table]
    tasks = P.tasks_of_table(table, paper_dir)
    pub = P.published_results(paper_dir)
    pub = pub[pub["table"] == table]
    sel = runs[(runs["scale"] == scale) & (runs["data_source"] == data_source) & runs["task"].isin(tasks)]
    sel, n_dup = one_per_seed(at_defaults(sel, defaults), ["task", "optim"])
    summ = summarize(sel, ["task", "optim"])

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
            for c in ["n", "mean", "std", "sem", "n_diverged", "n_failed", "n_interrupted", "n_unfinished",
                      "n_no_metric", "n_total", "seeds", "values"]:
                empty = 0 if c.startswith("n") else [] if c in ("seeds", "values") else math.nan
                row[c] = st[c] if st is not None else empty
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
            disp[f][info["label"]] = [fmt_ours(sub.loc[o], d, f, sig_mark(sub.loc[o, "p_value"])) for o in optims]
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
    notes = head + notes + _dup_note(n_dup) + _failed_notes(sel)
    return Table(name + profile_suffix(scale, data_source), _title(base_title, scale, data_source), data, md, tex,
                 notes)


# ----------------------------------------------------------------------------------------------------------
# Sweeps: Table 6 (lr_scale), Table 7 (block_size), Table 8 accuracy (update_each)
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepKind:
    kind: str
    param: str           # record hparam / Hydra override optim.<param>
    values: tuple        # the paper's grid
    optims: tuple        # optimizers swept
    reference: tuple     # optimizers run once at their defaults as a reference
    table: str
    title: str
    value_label: str

    def fmt_value(self, v) -> str:
        v = float(v)
        s = f"{v:g}"
        return {"lr": f"{s}x", "block": f"b={s}", "every": f"N={s}"}[self.kind]


KINDS = {
    "lr": SweepKind("lr", "lr_scale", (0.5, 1, 2, 3, 4, 5, 6, 10), ("adamw", "adahessian"), (), "6",
                    "Table 6: robustness to the learning rate (multiples of each optimizer's own base lr)",
                    "lr multiplier"),
    "block": SweepKind("block", "block_size", (1, 2, 4, 8, 16, 32, 64, 128), ("adahessian",), ("adamw",), "7",
                       "Table 7: AdaHessian block size (spatial averaging) with the AdamW reference", "block size"),
    "every": SweepKind("every", "update_each", (1, 2, 3, 4, 5), ("adahessian",), (), "8",
                       "Table 8 (metric): AdaHessian with the Hessian computed every N steps", "Hessian every N"),
}


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
                    defaults: DefaultsFn, optims=None, reference=None) -> pd.DataFrame:
    """The runs of a sweep: swept optimizers with every other swept parameter at its default, plus the reference
    optimizers at their defaults. Column ``value`` holds the swept value (NaN for the reference)."""
    optims = tuple(optims or kind.optims)
    reference = tuple(kind.reference if reference is None else reference)
    base = runs[(runs["task"] == task) & (runs["scale"] == scale) & (runs["data_source"] == data_source)]
    swept = at_defaults(base[base["optim"].isin(optims)], defaults, vary=kind.param)
    swept = swept.assign(value=swept[kind.param].astype(float), role="swept")
    ref = at_defaults(base[base["optim"].isin(reference) & ~base["optim"].isin(optims)], defaults)
    ref = ref.assign(value=np.nan, role="reference")
    both = pd.concat([swept, ref], ignore_index=True)
    kept, n_dup = one_per_seed(both, ["optim", "role", "value"])
    kept.attrs["n_duplicates"] = n_dup
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
                paper_dir=None) -> tuple[Table, pd.DataFrame]:
    """The sweep in the paper's layout: one column per swept value (plus the reference optimizer), one row per
    optimizer, with the published row and the difference under it where the paper has numbers for this task.
    Returns the table and the per-(optim, value) summary (for the figure)."""
    kind = KINDS[kind] if isinstance(kind, str) else kind
    optims = tuple(optims or kind.optims)
    reference = tuple(kind.reference if reference is None else reference)
    values = tuple(float(v) for v in (values or kind.values))
    info = P.task_info(task, paper_dir)
    d = info["decimals"]
    sel = sweep_selection(runs, kind, task=task, scale=scale, data_source=data_source, defaults=defaults,
                          optims=optims, reference=reference)
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
            for c in ["n", "mean", "std", "sem", "n_diverged", "n_failed", "n_interrupted", "n_unfinished",
                      "n_no_metric", "n_total", "seeds", "values"]:
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
    name = f"table{kind.table}_{kind.kind}_{task}{profile_suffix(scale, data_source)}"
    title = _title(f"{kind.title}, {info['label']}", scale, data_source)
    return Table(name, title, data, disp["md"], disp["tex"], notes), data
