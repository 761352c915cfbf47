"""Cell formatting and the writers: every table goes out as Markdown, CSV (tidy numbers) and LaTeX."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

PM = {"md": " ± ", "tex": r" $\pm$ "}
DASH = {"md": "—", "tex": "--"}
DELTA = {"md": "Δ", "tex": r"$\Delta$"}


def finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_mean_std(mean, std, d: int, fmt: str = "md") -> str:
    if not finite(mean):
        return DASH[fmt]
    s = f"{float(mean):.{d}f}"
    if finite(std):
        s += f"{PM[fmt]}{float(std):.{d}f}"
    return s


def fmt_diff(diff, d: int, fmt: str = "md") -> str:
    return f"{float(diff):+.{d}f}" if finite(diff) else DASH[fmt]


def fmt_ours(row, d: int, fmt: str = "md", mark: str = "") -> str:
    """Our cell: 'mean ± std (n=k)', with diverged/failed/unfinished runs counted beside it; 'missing' if none."""
    if row is None or int(row.get("n_total", 0) or 0) == 0:
        return "missing"
    n = int(row["n"])
    counts = [(int(row.get(c, 0) or 0), label) for c, label in [
        ("n_diverged", "diverged"), ("n_failed", "failed"), ("n_interrupted", "interrupted"),
        ("n_unfinished", "unfinished"), ("n_stale", "stale"), ("n_no_metric", "no metric")]]
    others = ", ".join(f"{k} {label}" for k, label in counts if k)
    if n == 0:
        return f"{others} (of {int(row['n_total'])})"
    s = f"{fmt_mean_std(row['mean'], row['std'], d, fmt)} (n={n})"
    if mark:
        s += mark if fmt == "md" else f"$^{{{mark}}}$"
    if others:
        s += f" [+{others}]"
    return s


_TEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                "±": r"$\pm$", "Δ": r"$\Delta$", "—": "--", "×": r"$\times$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX_SPECIAL.get(c, c) for c in str(s))


@dataclass
class Table:
    """One table: tidy numbers (``data`` -> CSV), its display in the paper's layout (``md``/``tex`` cells), a
    title and notes (significance, missing and failed runs, provenance)."""

    name: str
    title: str
    data: pd.DataFrame
    md: pd.DataFrame
    tex: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        body = self.md.to_markdown(index=False, disable_numparse=True)
        notes = "\n".join(f"- {n}" for n in self.notes)
        return f"## {self.title}\n\n{body}\n\n{notes}\n"

    def latex(self) -> str:
        tex = self.tex.copy()
        tex.columns = [tex_escape(c) for c in tex.columns]
        tex.iloc[:, 0] = tex.iloc[:, 0].map(tex_escape)  # row labels are plain text; the cells are LaTeX already
        caption = tex_escape(self.title)
        body = tex.to_latex(index=False, escape=False, caption=caption, label=f"tab:{self.name}",
                            column_format="l" + "r" * (tex.shape[1] - 1))
        notes = "".join("% " + re.sub(r"\s*\n\s*", " ", n) + "\n" for n in self.notes)
        return notes + body

    def write(self, out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{self.name}.md", out / f"{self.name}.csv", out / f"{self.name}.tex"]
        paths[0].write_text(self.markdown())
        data = self.data.copy()
        for c in data.columns:  # lists (values, seeds) as "a;b;c" so the CSV stays one value per cell
            if data[c].map(lambda v: isinstance(v, list)).any():
                data[c] = data[c].map(lambda v: ";".join(map(str, v)) if isinstance(v, list) else v)
        data.to_csv(paths[1], index=False)
        paths[2].write_text(self.latex())
        return paths
