"""How a run departs from its trainer profile's recipe: the record's ``deviations`` (schema 2).

The recipe of a run is what ``task=<task> optim=<optim> trainer=<profile>`` composes to with no other override.
A run's deviations are the settings of its resolved config that differ from that recipe, as sorted
``"dotted.key=value"`` strings, leaving out the operational keys below (where files live, logging, the seed,
resuming, how fast the machine runs it, which data copy): those never change what the run means. An empty list
says the run *is* its profile's recipe, so a table titled with that scale may show it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

# Dotted prefixes that never count as a deviation (contract 2 of the project's shared rules).
OPERATIONAL = (
    "paths", "logger", "seed", "resume", "skip_completed", "hydra", "sources",
    "trainer.progress", "trainer.device", "trainer.num_workers", "trainer.num_threads", "trainer.checkpoint",
    "trainer.log_every", "trainer.fast_batchnorm", "trainer.fast_conv", "data.root", "data.sacrebleu_ref",
    "data.download", "data.source",
)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def _operational(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in OPERATIONAL)


def _same(a: Any, b: Any) -> bool:
    # 1 and 1.0 are the same setting (as in the experiment key); True and 1 are not.
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def deviations(run: dict[str, Any], recipe: dict[str, Any]) -> list[str]:
    """Sorted ``"key=value"`` strings (value as in the run) for every non-operational leaf that differs;
    a key the run lacks is written ``key=<unset>``, unless the recipe's value is null (a setting added since the
    run was made, whose null means what the run did)."""
    mine, ref = _flatten(run), _flatten(recipe)
    out = []
    for key in sorted(set(mine) | set(ref)):
        if _operational(key) or (key in mine and key in ref and _same(mine[key], ref[key])):
            continue
        if key not in mine and ref[key] is None:  # a setting added since the run: its null is what the run did
            continue
        out.append(f"{key}={_show(mine[key])}" if key in mine else f"{key}=<unset>")
    return out


def compose_recipe(task: str, optim: str, profile: str) -> dict[str, Any]:
    """The resolved config of ``task=<task> optim=<optim> trainer=<profile>`` with no other override."""
    overrides = [f"task={task}", f"optim={optim}", f"trainer={profile}"]
    if GlobalHydra.instance().is_initialized():  # inside run.py's @hydra.main: its config search path
        cfg = compose(config_name="config", overrides=overrides)
    else:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)
