"""Click-prediction metrics on the test rows (day 7): accuracy (percent, the paper's 79.1), BCE and ROC AUC.

Accuracy rounds the predicted click probability at 0.5, as dlrm does (``--round-targets``). The trainer requires a
``val_loss`` key: it is the mean BCE over the same evaluation rows (there is no separate validation set in the
paper's protocol); ``test_loss`` holds the same number under its honest name.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, limit_batches: int | None = None
             ) -> dict[str, float]:
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    labels, scores = [], []
    try:
        for i, (dense, sparse, label) in enumerate(loader):
            if limit_batches and i >= limit_batches:
                break
            dense, sparse, label = dense.to(device), sparse.to(device), label.to(device)
            logits = model(dense, sparse).float()
            loss_sum += F.binary_cross_entropy_with_logits(logits, label, reduction="sum").item()
            correct += ((logits > 0).float() == label).sum().item()  # p > 0.5  <=>  logit > 0
            count += label.numel()
            labels.append(label.cpu().numpy())
            scores.append(logits.cpu().numpy())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluation set is empty: check data.root and trainer.limit_val_batches")
    loss = loss_sum / count
    out = {"val_loss": loss, "test_loss": loss, "test_acc": 100.0 * correct / count}
    auc = roc_auc(np.concatenate(labels), np.concatenate(scores))
    if auc is not None:  # a tiny evaluation (smoke) may hold one class only: then no AUC rather than NaN
        out["test_auc"] = auc
    return out
