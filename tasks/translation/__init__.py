"""Machine translation (IWSLT14 De-En, WMT14 En-De) trained by fairseq with the AdaHessian plugin.

``train(cfg, run)`` is the family entry point (tasks/translation/launcher.py). fairseq itself only runs in
subprocesses; the plugin it loads (``--user-dir``) is tasks/translation/adahessian_fairseq. See
docs/translation.md.
"""

from __future__ import annotations

# fairseq writes and resumes its own checkpoints (checkpoint_last.pt in the run directory), not the engine's last.pt.
CHECKPOINTS_ITSELF = True


def train(cfg, run) -> None:
    from .launcher import train as _train

    _train(cfg, run)
