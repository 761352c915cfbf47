"""Click-through prediction: DLRM on Criteo Kaggle (the paper's Figure 6), days 1-6 train, day 7 test.

Metric: test accuracy in percent. The model exposes two parameter sets, ``embeddings`` (the 26 tables) and
``dense`` (bottom and top MLPs), so the AdaHessian recipe can keep the tables on Adagrad (``optim.per_set``).
One pass over days 1-6 is split into ``task.segments_per_pass`` trainer epochs, each followed by an evaluation
and a checkpoint. See docs/tasks_lm_dlrm.md.
"""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from engine.task_api import MetricSpec, TorchTask
from engine.trainer import fit

from .data import TEST_ROWS, ClickBatches, EvalBatches, load_prepared, open_prepared, synthetic_splits
from .metric import evaluate
from .model import DLRM, click_loss

SPARSE_CAPABLE = ("adagrad",)  # optimizers of the suite that take sparse embedding gradients


def embedding_optimizer(optim_cfg) -> str:
    """The name of the optimizer that will update the embedding tables."""
    per_set = optim_cfg.get("per_set") or {}
    return str((per_set.get("embeddings") or {}).get("name", optim_cfg.name)).lower()


def use_sparse_embeddings(setting, optim_cfg) -> bool:
    """``auto``: sparse gradients exactly when the tables' optimizer takes them (Adagrad, as dlrm)."""
    if setting == "auto":
        return embedding_optimizer(optim_cfg) in SPARSE_CAPABLE
    if not isinstance(setting, bool):
        raise ValueError(f"task.model.sparse_embeddings={setting!r} is not allowed; choose auto, true or false")
    return setting


def check_data(cfg) -> None:
    """Before a run record exists: the prepared arrays are present and agree with meta.json (shapes, types, table
    sizes), or one line naming the file (FileNotFoundError / ValueError). Synthetic data needs nothing."""
    if cfg.data.source == "synthetic":
        return
    if cfg.data.test_rows not in TEST_ROWS:
        raise ValueError(f"data.test_rows={cfg.data.test_rows!r} is not allowed; choose one of {', '.join(TEST_ROWS)}")
    open_prepared(cfg.data.root)


def load_splits(cfg):
    if cfg.data.source == "synthetic":
        return synthetic_splits(cfg.data.synthetic)
    train, test, meta = load_prepared(cfg.data.root, cfg.data.test_rows)
    info = {"source": "real", "root": str(cfg.data.root), "counts": meta["counts"], "rows": meta["rows"],
            "day_rows": meta["day_rows"], "max_ind_range": meta["max_ind_range"], "test_rows": cfg.data.test_rows}
    return train, test, info


def build_with_info(cfg) -> tuple[TorchTask, dict]:
    task_cfg = cfg.task
    train, test, info = load_splits(cfg)
    m = task_cfg.model
    sparse = use_sparse_embeddings(m.sparse_embeddings, cfg.optim)
    if sparse:
        # Opt out of torch's sparse invariant checks explicitly (the default, left implicit, makes torch print
        # "Memory errors (e.g. SEGFAULT) will occur ..." at the first sparse gradient). The sparse tensors here
        # are built by torch itself (embedding backward, Adagrad's update), valid by construction; checking them
        # would cost time on every step.
        torch.sparse.check_sparse_tensor_invariants.disable()
    model = DLRM(train.counts, m.embedding_dim, list(m.bottom_mlp), list(m.top_mlp), sparse_embeddings=sparse)
    train_batches = ClickBatches(train, cfg.trainer.batch_size, task_cfg.segments_per_pass, seed=cfg.seed)
    task = TorchTask(
        model=model,
        train_loader=train_batches,
        val_loader=EvalBatches(test, task_cfg.eval_batch_size),
        loss=click_loss,
        evaluate=evaluate,
        metric=MetricSpec(task_cfg.metric.name, task_cfg.metric.higher_is_better),
        param_sets=model.param_sets(),
        on_epoch_start=train_batches.set_epoch,
    )
    info = {**info, "model": OmegaConf.to_container(m), "sparse_embeddings": sparse,
            "n_params": {k: sum(p.numel() for p in v) for k, v in model.param_sets().items()},
            "train_rows": len(train), "test_rows_n": len(test),
            "batches_per_pass": int(train_batches.bounds[-1]), "segments_per_pass": task_cfg.segments_per_pass}
    return task, info


def build(cfg) -> TorchTask:
    return build_with_info(cfg)[0]


def train(cfg, run) -> None:
    task, info = build_with_info(cfg)
    run.update(extra={"recommendation": info})
    fit(cfg, run, task)
