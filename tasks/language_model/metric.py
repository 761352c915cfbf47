"""Perplexity on the validation and the test split, every evaluation.

The paper reports the test perplexity of the model with the best validation perplexity, so each evaluation row
holds both (``val_ppl``, ``test_ppl``) and the task's metric is ``test_ppl`` selected by ``val_ppl`` (see
engine/record.py). Perplexity is exp of the mean cross-entropy per predicted token (every token of a split except
each stream's first, including ``<eos>``), the usual word-level PTB convention.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def perplexity(mean_nll: float) -> float:
    return math.exp(mean_nll) if mean_nll < 700 else math.inf  # exp overflows past ~709: report inf, not raise


@torch.no_grad()
def mean_nll(model: nn.Module, loader: Iterable, device: torch.device, limit_batches: int | None = None) -> float:
    total, count = 0.0, 0
    for i, (x, y) in enumerate(loader):
        if limit_batches and i >= limit_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x).float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    if count == 0:
        raise ValueError("evaluation split is empty: check data.root and trainer.limit_val_batches")
    return total / count


class LMEvaluator:
    """``evaluate(model, val_loader, device, limit)`` for the trainer, holding the test split's loader too."""

    def __init__(self, test_loader: Iterable):
        self.test_loader = test_loader

    def __call__(self, model: nn.Module, val_loader: Iterable, device: torch.device,
                 limit_batches: int | None = None) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            val = mean_nll(model, val_loader, device, limit_batches)
            test = mean_nll(model, self.test_loader, device, limit_batches)
        finally:
            model.train(was_training)
        return {"val_loss": val, "val_ppl": perplexity(val), "test_loss": test, "test_ppl": perplexity(test)}
