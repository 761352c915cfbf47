"""Machine translation (IWSLT14 De-En, WMT14 En-De) trained by fairseq with the AdaHessian plugin.

``train(cfg, run)`` is the family entry point (tasks/translation/launcher.py). fairseq itself only runs in
subprocesses; the plugin it loads (``--user-dir``) is tasks/translation/adahessian_fairseq. See
docs/translation.md.
"""

from __future__ import annotations

# fairseq writes and resumes its own checkpoints (checkpoint_last.pt in the run directory), not the engine's last.pt.
CHECKPOINTS_ITSELF = True


def check_data(cfg) -> None:
    """Before a run record exists: the binarized data of ``data.root`` is complete and each ``.bin`` as long as
    its ``.idx`` says (FileNotFoundError / ValueError, one line). Synthetic data is made by the run itself."""
    from omegaconf import OmegaConf

    from .fairseq_args import effective_task
    from .launcher import check_real_data

    c = OmegaConf.to_container(cfg, resolve=True)
    if c["data"]["source"] == "synthetic":
        return
    check_real_data(c["data"], effective_task(c))


def train(cfg, run) -> None:
    from .launcher import train as _train

    _train(cfg, run)
