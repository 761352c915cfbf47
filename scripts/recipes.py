"""The provenance of every paper-scale recipe value: the checker and the docs/recipes.md generator.

A config file that sets recipe values carries a top-level ``sources:`` block mirroring the config's structure
(COMMON contract 1): ``conf/task/<task>.yaml`` sources its ``task``, ``data`` and ``trainer`` recipe keys,
``conf/task_optim/<task>_<optim>.yaml`` its ``optim`` keys. Each source is a string ``"<kind>: <citation>"``, kind
one of :data:`KINDS`. A string on an inner node covers every value below it (``schedule: "paper: ..."`` sources the
whole schedule). The composed config thus has one ``sources`` node; it is not part of the experiment key.

Recipe keys (what must be sourced), in the config composed at ``trainer=paper``:

- ``task.*`` except :data:`TASK_NOT_RECIPE` (identity and per-profile keys);
- ``optim.*`` except :data:`OPTIM_NOT_RECIPE` (``lr_scale`` is the sweep axis, 1 in a recipe);
- ``data.*`` except :data:`DATA_NOT_RECIPE` (where the data lives, and the synthetic stand-in: not a paper setting);
- ``trainer.*`` keys in :data:`TRAINER_RECIPE`. Operational trainer keys (device, workers, progress, checkpoints,
  logging) and the truncation knobs that are null at paper scale (max_steps, limit_*_batches) are not recipe keys.

A value that is an interpolation of another (``trainer.epochs: ${task.epochs}``, ``task.schedule:
${task.schedules.${task.schedule_preset}}``) is sourced where it comes from.

A recipe pair is a (task, optimizer) with a ``conf/task_optim`` file; other compositions are not paper recipes.

    python -m scripts.recipes            # writes docs/recipes.md
    python -m scripts.recipes --check    # exit 1 when a value has no source or docs/recipes.md is stale
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
DOC = ROOT / "docs" / "recipes.md"
DISAGREEMENTS = CONF / "disagreements.yaml"

KINDS = ("paper", "code", "ref", "library", "ours")
SOURCE_RE = re.compile(rf"^({'|'.join(KINDS)}): \S")
TASK_NOT_RECIPE = ("name", "family", "dataset", "profiles", "prepare_script")
OPTIM_NOT_RECIPE = ("name", "_target_", "_partial_", "lr_scale")
DATA_NOT_RECIPE = ("source", "root", "download", "sacrebleu_ref", "synthetic")
TRAINER_RECIPE = ("epochs", "batch_size", "precision", "grad_clip", "hessian_batch_fraction")
# Which top-level sections each kind of config file may source (contract 1).
FILE_SECTIONS = {"task": ("task", "data", "trainer"), "task_optim": ("optim",)}


def tasks() -> list[str]:
    return sorted(p.stem for p in (CONF / "task").glob("*.yaml"))


def pairs() -> list[tuple[str, str]]:
    """Every (task, optimizer) with a conf/task_optim file: the recipe pairs."""
    out = []
    names = tasks()
    for path in sorted((CONF / "task_optim").glob("*.yaml")):
        task = max((t for t in names if path.stem.startswith(t + "_")), key=len, default=None)
        if task is None:
            raise ValueError(f"{path}: its name starts with no task of conf/task/ ({', '.join(names)})")
        out.append((task, path.stem[len(task) + 1:]))
    return out


class Composed(dict):
    """A resolved config (a plain dict) that also keeps its unresolved form in ``raw`` (to follow interpolations)."""

    raw: dict[str, Any]


@functools.lru_cache(maxsize=256)
def compose(task: str, optim: str, overrides: tuple[str, ...] = ()) -> Composed:
    """The resolved config of ``python run.py task=T optim=O trainer=paper [overrides]`` (cached: treat it as
    read-only)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = hydra_compose(config_name="config",
                            overrides=[f"task={task}", f"optim={optim}", "trainer=paper", *overrides])
    out = Composed(OmegaConf.to_container(cfg, resolve=True))
    out.raw = OmegaConf.to_container(cfg, resolve=False)
    return out


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out
    return {} if isinstance(node, dict) else {prefix: node}  # an empty dict sets nothing


def recipe_leaves(cfg: dict[str, Any]) -> dict[str, Any]:
    """Dotted key -> value of every recipe value of a composed config."""
    out: dict[str, Any] = {}
    for section, skip in (("task", TASK_NOT_RECIPE), ("optim", OPTIM_NOT_RECIPE), ("data", DATA_NOT_RECIPE)):
        for k, v in (cfg.get(section) or {}).items():
            if k not in skip:
                out.update(_leaves(v, f"{section}.{k}"))
    for k in TRAINER_RECIPE:
        if k in cfg["trainer"]:
            out[f"trainer.{k}"] = cfg["trainer"][k]
    return out


def source_nodes(sources: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> source string (or the bad value found there) of a ``sources`` tree."""
    if isinstance(sources, dict):
        out: dict[str, Any] = {}
        for k, v in sources.items():
            out.update(source_nodes(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: sources}


def _get(cfg: dict[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


_REF = re.compile(r"^\$\{([^{}]*(?:\$\{[^{}]*\}[^{}]*)*)\}$")   # "${a.b}" or "${a.${c}}": one whole reference
_INNER = re.compile(r"\$\{([^${}]+)\}")


def alias(key: str, cfg: dict[str, Any]) -> str | None:
    """The key a value is interpolated from (``trainer.epochs`` -> ``task.epochs``), or None."""
    raw = getattr(cfg, "raw", None)
    if raw is None:
        return None
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        found, node = _get(raw, ".".join(parts[:n]))
        m = _REF.match(node) if found and isinstance(node, str) else None
        if m:
            target = _INNER.sub(lambda r: str(_get(cfg, r.group(1))[1]), m.group(1))
            return ".".join([target, *parts[n:]])
    return None


def source_of(key: str, nodes: dict[str, Any], cfg: dict[str, Any] | None = None) -> tuple[str, str] | None:
    """(source path, source) covering a recipe key: the deepest source node at or above it, else at or above the
    key it is interpolated from (followed up to 5 times)."""
    candidates = [key]
    for _ in range(5):
        nxt = alias(candidates[-1], cfg) if cfg is not None else None
        if nxt is None or nxt in candidates:
            break
        candidates.append(nxt)
    for cand in candidates:
        parts = cand.split(".")
        for n in range(len(parts), 0, -1):
            path = ".".join(parts[:n])
            if path in nodes:
                return path, nodes[path]
    return None


def check_pair(task: str, optim: str, cfg: dict[str, Any] | None = None) -> list[str]:
    """Every problem of one recipe pair's provenance, one line each (empty: complete)."""
    cfg = cfg if cfg is not None else compose(task, optim)
    nodes = source_nodes(cfg.get("sources") or {})
    where = f"task={task} optim={optim}"
    problems = []
    for path, src in nodes.items():
        if not isinstance(src, str) or not SOURCE_RE.match(src):
            problems.append(f"{where}: sources.{path}={src!r} is not '<kind>: <citation>' with kind one of "
                            f"{', '.join(KINDS)}")
        if not _get(cfg, path)[0]:
            problems.append(f"{where}: sources.{path} names no config value (renamed or removed?)")
    for key in recipe_leaves(cfg):
        if source_of(key, nodes, cfg) is None:
            problems.append(f"{where}: {key} has no source (add it to the sources: block of "
                            f"{_owner_file(task, optim, key)})")
    return problems


def _owner_file(task: str, optim: str, key: str) -> str:
    return f"conf/task_optim/{task}_{optim}.yaml" if key.startswith("optim.") else f"conf/task/{task}.yaml"


def check_files() -> list[str]:
    """Each file sources only its own sections (contract 1): task files task/data/trainer, pair files optim."""
    problems = []
    for kind, allowed in FILE_SECTIONS.items():
        for path in sorted((CONF / kind).glob("*.yaml")):
            raw = yaml.safe_load(path.read_text()) or {}
            for section in raw.get("sources") or {}:
                if section not in allowed:
                    problems.append(f"{path.relative_to(ROOT)}: sources.{section} belongs in "
                                    f"{'conf/task_optim' if section == 'optim' else 'conf/task'}; "
                                    f"this file may source {', '.join(allowed)}")
    return problems


def load_disagreements() -> list[dict[str, Any]]:
    entries = yaml.safe_load(DISAGREEMENTS.read_text()) or []
    required = ("topic", "tasks", "paper", "code", "default", "why")
    for e in entries:
        missing = [k for k in required if not e.get(k)]
        if missing or not (e.get("overrides") or e.get("other_side")):
            raise ValueError(f"{DISAGREEMENTS.name}: {e.get('topic')!r} lacks {', '.join(missing) or 'overrides'}"
                             " (every entry names the other side: overrides or other_side)")
    return entries


# ---- docs/recipes.md

def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def _cell(value: Any, src: str) -> str:
    return f"`{_fmt(value)}`<br>{_escape(src)}"


def _escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _rows(cfg: dict[str, Any], keys: list[str]) -> list[tuple[str, Any, str]]:
    """(source path, value there, source) for the recipe keys given, one row per covering source node."""
    nodes = source_nodes(cfg.get("sources") or {})
    rows: dict[str, tuple[str, Any, str]] = {}
    for key in keys:
        hit = source_of(key, nodes, cfg)
        if hit is None:
            rows.setdefault(key, (key, recipe_leaves(cfg)[key], "**no source**"))
            continue
        path, src = hit
        rows.setdefault(path, (path, _get(cfg, path)[1], src))
    return list(rows.values())


HEADER = """# Recipes: every paper-scale setting and its source

Generated by `python -m scripts.recipes` (`make recipes`) from the `sources:` blocks of `conf/task/*.yaml` and
`conf/task_optim/*.yaml` and from `conf/disagreements.yaml`; `tests/recipes/test_recipes.py` fails when a recipe
value has no source or this page is stale. Do not edit it by hand.

Each value is what `python run.py task=T optim=O` (`trainer=paper`) runs; `python run.py task=T optim=O --cfg job`
prints it with its `sources`. Kinds of source: **paper** (arXiv:2006.00719v2: section, table, appendix),
**code** (the authors' repository amirgholami/adahessian: file and flag), **ref** (a cited reference's code),
**library** (a library default), **ours** (the paper is silent: the reason for the value).

Recipe keys: `task.*` except its identity and profiles (`name`, `family`, `dataset`, `profiles`, `prepare_script`);
`optim.*` except `name`, `_target_`, `_partial_` and `lr_scale` (the LR sweep's axis, 1 in a recipe); `data.*`
except where the data lives and the synthetic stand-in (`source`, `root`, `download`, `sacrebleu_ref`,
`synthetic`); `trainer.epochs`, `batch_size`, `precision`, `grad_clip`, `hessian_batch_fraction`. A source on an
inner node covers every value below it. Optimizers without a `conf/task_optim/<task>_<optim>.yaml` are not paper
recipes for that task and are not listed.
"""


def render() -> str:
    out = [HEADER]
    by_task: dict[str, list[str]] = {}
    for task, optim in pairs():
        by_task.setdefault(task, []).append(optim)
    for task in tasks():
        optims = by_task.get(task, [])
        if not optims:
            out.append(f"## {task}\n\nNo recipe pair (no conf/task_optim/{task}_*.yaml).\n")
            continue
        cfgs = {o: compose(task, o) for o in optims}
        first = cfgs[optims[0]]
        out.append(f"## {task}\n")
        shared = [k for k in recipe_leaves(first) if not k.startswith("optim.")]
        out.append("| setting | value | source |\n|---|---|---|")
        for path, value, src in _rows(first, shared):
            out.append(f"| `{path}` | `{_escape(_fmt(value))}` | {_escape(src)} |")
        out.append("")
        out.append(f"Optimizer settings (`conf/task_optim/{task}_<optimizer>.yaml`):\n")
        cells: dict[str, dict[str, str]] = {}
        for o in optims:
            keys = [k for k in recipe_leaves(cfgs[o]) if k.startswith("optim.")]
            for path, value, src in _rows(cfgs[o], keys):
                cells.setdefault(path, {})[o] = _cell(value, src)
        out.append("| setting | " + " | ".join(optims) + " |\n|---|" + "---|" * len(optims))
        for path, row in cells.items():
            out.append(f"| `{path}` | " + " | ".join(row.get(o, "") for o in optims) + " |")
        out.append("")
    out.append("## Paper vs code\n")
    out.append("Where the paper's text and the code behind its numbers disagree (`conf/disagreements.yaml`). The "
               "default is the side that produced the published numbers; the other side is one override away.\n")
    for e in load_disagreements():
        other = (" ".join(f"`{o}`" for o in e["overrides"]) if e.get("overrides") else e["other_side"])
        out.append(f"### {e['topic']}\n")
        out.append(f"- tasks: {', '.join(e['tasks'])}" + (f"; setting: `{e['setting']}`" if e.get("setting") else ""))
        out.append(f"- paper: {e['paper']}")
        out.append(f"- code: {e['code']}")
        out.append(f"- our default: {e['default']}")
        out.append(f"- why: {e['why']}")
        out.append(f"- the other side: {other}\n")
    return "\n".join(out).rstrip() + "\n"


def check() -> list[str]:
    problems = check_files()
    for task, optim in pairs():
        problems += check_pair(task, optim)
    load_disagreements()
    if not DOC.exists() or DOC.read_text() != render():
        problems.append(f"{DOC} is stale: run `python -m scripts.recipes` (make recipes)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--check", action="store_true", help="report missing sources and a stale doc; write nothing")
    args = ap.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    problems = check_files() + [p for t, o in pairs() for p in check_pair(t, o)]
    DOC.write_text(render())
    print(f"wrote {DOC}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
