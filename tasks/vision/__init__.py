"""Image classification: CIFAR-10 ResNet20/32 (the authors' CIFAR ResNets) and ImageNet ResNet18 (torchvision).

Metric: top-1 accuracy on the test set (CIFAR-10) or the validation set (ImageNet), evaluated every epoch;
the paper reports the best over epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader

from engine.task_api import MetricSpec, TorchTask
from engine.trainer import fit

from . import data
from .data import build_datasets
from .metric import evaluate
from .resnet_cifar import CifarResNet

ARCHS = ("cifar_resnet", "resnet18")


def build_model(task_cfg) -> torch.nn.Module:
    if task_cfg.arch == "cifar_resnet":
        return CifarResNet(depth=task_cfg.depth, num_classes=task_cfg.num_classes)
    if task_cfg.arch == "resnet18":
        return torchvision.models.resnet18(weights=None, num_classes=task_cfg.num_classes)
    raise ValueError(f"task.arch={task_cfg.arch!r} is not allowed; choose one of {', '.join(ARCHS)}")


def fixed_order(n: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()


def classification_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def build(cfg) -> TorchTask:
    train_set, val_set = build_datasets(cfg.task, cfg.data, cfg.seed)
    tc = cfg.trainer
    loader_args = dict(num_workers=tc.num_workers, pin_memory=torch.cuda.is_available())
    return TorchTask(
        model=build_model(cfg.task),
        # Exact resume with workers: random crops and flips are drawn in the worker processes, which torch seeds
        # from a base seed drawn from the main process's RNG when they start. Persistent workers would start once
        # per process (a resumed process would seed epoch e's workers differently from an uninterrupted one);
        # fresh workers each epoch draw that seed after the trainer reseeds from (seed, epoch), so epoch e draws
        # the same augmentation in both. The cost is one worker start-up per epoch.
        train_loader=DataLoader(train_set, batch_size=tc.batch_size, shuffle=True, persistent_workers=False,
                                **loader_args),
        # A fixed shuffled order: a capped evaluation (trainer.limit_val_batches) still covers every class,
        # where image folders sorted by class would give only the first classes.
        # No randomness in evaluation: its workers may persist.
        val_loader=DataLoader(val_set, batch_size=cfg.task.eval_batch_size, sampler=fixed_order(len(val_set)),
                              persistent_workers=tc.num_workers > 0, **loader_args),
        loss=classification_loss,
        evaluate=evaluate,
        metric=MetricSpec(cfg.task.metric.name, cfg.task.metric.higher_is_better),
    )


def check_data(cfg) -> None:
    """Before a run record exists: the configured data is present and consistent, or one line saying what is not
    (FileNotFoundError: missing; ValueError: broken, naming the file). Synthetic data needs nothing."""
    data.check(cfg.task, cfg.data)


def train(cfg, run) -> None:
    fit(cfg, run, build(cfg))
