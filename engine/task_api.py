"""What a torch-native task family hands the shared trainer.

A family package (``tasks/vision``, ...) builds a :class:`TorchTask` from the config; the trainer
(``engine/trainer.py``) owns everything else: device, optimizer, schedule, loop, records. Families whose
training loop belongs to another library (fairseq) implement ``train(cfg, run)`` themselves instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

Batch = Any


@dataclass(frozen=True)
class MetricSpec:
    name: str  # the record's metric key, e.g. "top1_acc"
    higher_is_better: bool


@dataclass
class TorchTask:
    model: nn.Module
    train_loader: Iterable[Batch]
    val_loader: Iterable[Batch]
    # (model, batch) -> mean loss over the batch (a scalar tensor with graph)
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    # (model, loader, device, limit_batches) -> {"val_loss": ..., <metric.name>: ...}
    evaluate: Callable[[nn.Module, Iterable[Batch], torch.device, int | None], dict[str, float]]
    metric: MetricSpec
    # Number of samples in a batch (for samples/s) and the first `n` samples of it (for a Hessian sub-batch).
    batch_size_of: Callable[[Batch], int] = field(default=lambda b: len(b[0]))
    head_of_batch: Callable[[Batch, int], Batch] = field(default=lambda b, n: tuple(t[:n] for t in b))
    # Named disjoint parameter sets, when the recipe gives sets their own optimizer (DLRM: embeddings on Adagrad).
    param_sets: dict[str, list[nn.Parameter]] | None = None
    # Called at the start of every epoch with the epoch number (e.g. DistributedSampler.set_epoch).
    on_epoch_start: Callable[[int], None] | None = None
