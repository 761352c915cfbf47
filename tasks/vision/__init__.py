"""Image classification: CIFAR-10 ResNet20/32 (the authors' CIFAR ResNets) and ImageNet ResNet18 (torchvision).

Metric: top-1 accuracy on the test set (CIFAR-10) or the validation set (ImageNet), evaluated every epoch;
the paper reports the best over epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from engine.task_api import MetricSpec, TorchTask
from engine.trainer import fit, resolve_device
from optim import fast_batchnorm, fast_conv

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


def optimizer_uses_hessians(cfg) -> bool:
    """Whether the configured optimizer ever asks for graph-carrying gradients (it has ``needs_hessian``): the
    optimizer is built on a one-element stand-in parameter, so this follows the registry, not a list of names."""
    if cfg.get("optim") is None:
        return False
    opt = instantiate(cfg.optim)([torch.zeros(1, requires_grad=True)])
    return callable(getattr(opt, "needs_hessian", None))


FAST_SWITCH = (True, False, "auto")


def use_fast_module(cfg, switch: str) -> bool:
    """``trainer.fast_batchnorm`` / ``trainer.fast_conv``: true, false, or auto = on where it was measured faster,
    the CPU (results/cpu/2026-12-01-fast-batchnorm, results/cpu/2026-12-02-fast-conv). No GPU measurement exists
    yet (on CUDA torch's modules run cuDNN), so auto leaves them off there. Only for optimizers that take Hessians:
    forward and gradients are torch's bit for bit, so a first-order run has nothing to gain."""
    flag = cfg.trainer.get(switch, False)
    if flag not in FAST_SWITCH or not isinstance(flag, bool | str):
        raise ValueError(f"trainer.{switch}={flag!r} is not allowed; choose auto, true or false")
    if flag is False or not optimizer_uses_hessians(cfg):
        return False
    return flag is True or resolve_device(cfg.trainer.device).type == "cpu"


def fixed_order(n: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()


def classification_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def build(cfg) -> TorchTask:
    train_set, val_set = build_datasets(cfg.task, cfg.data, cfg.seed)
    tc = cfg.trainer
    model = build_model(cfg.task)
    if use_fast_module(cfg, "fast_batchnorm"):
        # Batch norm with a fused closed-form double backward (optim/batchnorm.py): same forward and gradients
        # bit for bit, Hessian-vector products equal to round-off, a faster Hessian step.
        fast_batchnorm(model)
    if use_fast_module(cfg, "fast_conv"):
        # Convolutions whose double backward calls torch's tuned kernels (optim/conv.py): the weight term of
        # autograd's own is a convolution with an activation-sized kernel. Same exactness as above.
        fast_conv(model)
    loader_args = dict(num_workers=tc.num_workers, pin_memory=torch.cuda.is_available())
    return TorchTask(
        model=model,
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
