"""The default value of each swept hyperparameter for a (task, optimizer, trainer profile), from conf/.

A comparison table must use only the runs at the defaults (lr_scale 1, the task's block size, Hessian every
step...), not the runs of an LR or block sweep that share the task and optimizer; a sweep table must hold every
other swept parameter at its default. The defaults come from composing the same Hydra config run.py uses.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from .paper import REPO

SWEPT = ("lr_scale", "block_size", "update_each", "hessian_batch_fraction")
CONF_DIR = REPO / "conf"

DefaultsFn = Callable[[str, str, str], dict]


@lru_cache(maxsize=256)
def _compose(conf_dir: str, task: str, optim: str, scale: str) -> tuple:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"task={task}", f"optim={optim}"]
    if (Path(conf_dir) / "trainer" / f"{scale}.yaml").exists():
        overrides.append(f"trainer={scale}")
    # A caller that left Hydra initialized (a notebook's own compose) would make initialize_config_dir fail;
    # compose with the suite's conf/ regardless.
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    out = {
        "lr_scale": cfg.optim.get("lr_scale", 1.0),
        "block_size": cfg.optim.get("block_size", None),
        "update_each": cfg.optim.get("update_each", None),
        "hessian_batch_fraction": cfg.trainer.get("hessian_batch_fraction", None),
    }
    return tuple(sorted(out.items()))


def hydra_defaults(conf_dir: str | Path = CONF_DIR) -> DefaultsFn:
    """Defaults from ``hydra.compose``; when the task is not (yet) configured, from conf/optim/<optim>.yaml."""

    def fn(task: str, optim: str, scale: str) -> dict:
        try:
            return dict(_compose(str(Path(conf_dir).resolve()), task, optim, scale))
        except Exception as e:  # noqa: BLE001 - fall back, and say so
            from omegaconf import OmegaConf

            path = Path(conf_dir) / "optim" / f"{optim}.yaml"
            warnings.warn(f"defaults for {task}/{optim}: compose failed ({type(e).__name__}: {e}); using {path}")
            cfg = OmegaConf.load(path) if path.exists() else OmegaConf.create({})
            return {
                "lr_scale": cfg.get("lr_scale", 1.0),
                "block_size": cfg.get("block_size", None),
                "update_each": cfg.get("update_each", None),
                "hessian_batch_fraction": 1.0,
            }

    return fn


def fixed_defaults(table: Mapping[tuple[str, str], dict] | None = None, **common) -> DefaultsFn:
    """Defaults given by hand (tests): ``table[(task, optim)]`` over ``common``; lr_scale defaults to 1."""

    def fn(task: str, optim: str, scale: str) -> dict:
        out = {"lr_scale": 1.0, **common}
        out.update((table or {}).get((task, optim), {}))
        return out

    return fn


def _matches(values: pd.Series, default) -> pd.Series:
    if default is None or (isinstance(default, float) and math.isnan(default)):
        return pd.Series(True, index=values.index)
    v = pd.to_numeric(values, errors="coerce")
    # A record without the field (NaN) belongs to an optimizer that has no such parameter.
    return v.isna() | ((v - float(default)).abs() <= 1e-9 * max(1.0, abs(float(default))))


def at_defaults(runs: pd.DataFrame, defaults: DefaultsFn, vary: str | None = None) -> pd.DataFrame:
    """The runs whose swept hyperparameters are at their defaults, except ``vary`` (the one a sweep varies)."""
    if runs.empty:
        return runs
    keep = pd.Series(False, index=runs.index)
    for (task, optim, scale), grp in runs.groupby(["task", "optim", "scale"], dropna=False):
        d = defaults(task, optim, scale)
        m = pd.Series(True, index=grp.index)
        for p in SWEPT:
            if p != vary and p in d:
                m &= _matches(grp[p], d[p])
        keep.loc[grp.index] = m
    return runs[keep]
