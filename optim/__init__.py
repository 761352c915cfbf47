"""AdaHessian, its Hutchinson estimator, and the registry that builds every optimizer of the suite.

Nothing here knows about tasks. See docs/optim.md for the training-loop patterns (delayed Hessian, sub-batch
Hessian, mixed precision, data parallel, attention, torch.compile).
"""

from .adahessian import AdaHessian
from .amp import update_scaler
from .attention import hessian_safe_attention
from .batchnorm import fast_batchnorm
from .combined import CombinedOptimizer
from .distributed import allreduce_grads_, allreduce_mean_
from .hutchinson import MissingGraphError
from .registry import OPTIMIZERS, UnknownOptionError, build_optimizer, needs_hessian

__all__ = [
    "AdaHessian",
    "CombinedOptimizer",
    "MissingGraphError",
    "OPTIMIZERS",
    "UnknownOptionError",
    "allreduce_grads_",
    "allreduce_mean_",
    "build_optimizer",
    "fast_batchnorm",
    "hessian_safe_attention",
    "needs_hessian",
    "update_scaler",
]
