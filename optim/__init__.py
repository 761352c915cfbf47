"""AdaHessian, Sophia-H, their public second-order base, and the registry that builds every optimizer of the suite.

Nothing here knows about tasks. See docs/optim.md for the training-loop patterns (delayed Hessian, sub-batch
Hessian, mixed precision, data parallel, attention, torch.compile).
"""

from .adahessian import AdaHessian
from .amp import update_scaler
from .attention import hessian_safe_attention
from .batchnorm import fast_batchnorm
from .combined import CombinedOptimizer
from .conv import fast_conv
from .distributed import allreduce_grads_, allreduce_mean_
from .hutchinson import MissingGraphError
from .registry import (
    OPTIMIZERS,
    REGISTRY,
    UnknownOptionError,
    build_optimizer,
    is_second_order,
    needs_hessian,
    optimizer_factory,
    resolve,
)
from .second_order import SecondOrderOptimizer
from .sophia import SophiaH

__all__ = [
    "AdaHessian",
    "CombinedOptimizer",
    "MissingGraphError",
    "OPTIMIZERS",
    "REGISTRY",
    "SecondOrderOptimizer",
    "SophiaH",
    "UnknownOptionError",
    "allreduce_grads_",
    "allreduce_mean_",
    "build_optimizer",
    "fast_batchnorm",
    "fast_conv",
    "hessian_safe_attention",
    "is_second_order",
    "needs_hessian",
    "optimizer_factory",
    "resolve",
    "update_scaler",
]
