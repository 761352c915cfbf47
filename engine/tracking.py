"""Weights & Biases, configured so that it works with no account and no network.

mode ``offline`` (default) writes a run directory that ``wandb sync`` uploads later; ``disabled`` (tests) makes
every call a no-op; ``online`` logs live when the user has run ``wandb login``.
"""

from __future__ import annotations

import os
from typing import Any

MODES = ("offline", "online", "disabled")


def init_wandb(
    *,
    mode: str,
    project: str,
    entity: str | None,
    run_id: str,
    name: str,
    group: str,
    tags: list[str],
    config: dict[str, Any],
    save_dir: str,
    resume: bool,
):
    if mode not in MODES:
        raise ValueError(f"logger.mode={mode!r} is not allowed; choose one of {', '.join(MODES)}")
    import wandb

    os.makedirs(save_dir, exist_ok=True)
    # The console capture thread costs time on every print and is useless offline.
    settings = wandb.Settings(console="off", silent=True, x_disable_stats=mode != "online")
    return wandb.init(
        mode=mode,
        project=project,
        entity=entity,
        id=run_id,  # the record's run id: one run, one W&B run, also across resume
        name=name,
        group=group,
        tags=tags,
        config=config,
        dir=save_dir,
        resume="allow" if resume else None,
        settings=settings,
        reinit="create_new",  # a multirun launches many runs in one process
    )
