"""The suite's second-order optimizers (AdaHessian, Sophia-H: any ``optim.SecondOrderOptimizer``) as fairseq
optimizers, through the base's public API only (``draw_probes``, ``probe_estimate``, ``supply_estimate``,
``needs_hessian``, ``step``). What follows is written for AdaHessian; Sophia-H is the same with Gaussian probes, the
signed estimate ``z * Hz`` and its own update.

fairseq's training step is: ``zero_grad``; for each micro-batch (``--update-freq``) ``task.train_step`` ->
``optimizer.backward(loss)`` on the *summed* loss; ``all_reduce_grads`` (workers); ``multiply_grads(world /
sample_size)``; ``clip_grad_norm``; ``step``. The last three act on ``p.grad.data``, which a graph built by
``loss.backward(create_graph=True)`` never sees: a naive plugin gets the Hessian of the summed loss while the
gradient is of the mean loss, i.e. a step ``sample_size`` times too small, and keeps the graph alive until ``step``.

Here instead, on a step where AdaHessian needs curvature, ``backward`` computes the gradient with
``create_graph=True`` and at once the Hessian-vector products ``H z`` (one Rademacher ``z`` per update, drawn from
``optim.AdaHessian``'s own generator, seeded alike on every worker and saved in its state, so every worker and
every micro-batch of an update uses the same ``z``), frees the graph and
leaves only detached tensors: ``p.grad`` and the accumulated ``H z``. The factors fairseq then applies to the
gradients (the ``1/world`` of legacy_ddp's all-reduce, ``world / sample_size``, the clipping coefficient) are
tracked in one multiplier, and ``H z`` is all-reduced (summed) across workers. At ``step`` the estimate is
``D = |z * (H z)|`` with

- ``loss_semantics="mean"`` (default): ``H z`` times that multiplier, i.e. the Hessian of exactly the loss whose
  gradient the update uses (the mean over the update's tokens, clipped as the gradient is);
- ``loss_semantics="authors"``: the authors' fairseq fork: gradient and curvature of the loss summed over the
  update's tokens, and clipping does not reach the update. With ``hessian_power = 1`` this is the mean-loss
  update with ``eps`` divided by the update's sample size (about ``1e-4 / 3000`` at 4096 max tokens).

The estimate then goes to this repository's ``optim.AdaHessian`` (its spatial averaging, moments, bias
correction and update), used as fairseq's inner ``torch.optim.Optimizer``; the Rademacher draw and the
Hessian-vector product are ``optim.hutchinson``'s. Memory stays that of one backward plus the
double-backward graph of one micro-batch, whatever ``--update-freq`` is.

Mixed precision: fairseq's fp16/bf16/amp wrappers call ``loss.backward`` themselves, so they are refused here.
"""


import logging
from dataclasses import dataclass, field
from typing import Any, List

import torch
import torch.distributed as dist
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II

from optim import AdaHessian, SecondOrderOptimizer, SophiaH
from optim.hutchinson import hvp

logger = logging.getLogger(__name__)

LOSS_SEMANTICS = ("mean", "authors")


def _parse_betas(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        import ast

        value = ast.literal_eval(value)
    b1, b2 = (float(v) for v in value)
    return b1, b2


@dataclass
class FairseqSecondOrderConfig(FairseqDataclass):
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled: p <- p - lr * wd * p"})
    update_each: int = field(default=1, metadata={"help": "estimate the Hessian every N-th update"})
    hessian_warmup_steps: int = field(default=0, metadata={"help": "estimate every update during the first N"})
    n_samples: int = field(default=1, metadata={"help": "probe vectors per estimate"})
    loss_semantics: ChoiceEnum(LOSS_SEMANTICS) = field(
        default="mean",
        metadata={"help": "mean: gradient and curvature of the mean loss fairseq normalises to (clipped alike); "
                          "authors: of the summed loss, unclipped (the authors' fairseq fork)"},
    )
    hessian_seed: int = II("common.seed")
    lr: List[float] = II("optimization.lr")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    amp: bool = II("common.amp")
    ddp_backend: str = II("distributed_training.ddp_backend")
    distributed_world_size: int = II("distributed_training.distributed_world_size")


@dataclass
class FairseqAdaHessianConfig(FairseqSecondOrderConfig):
    adahessian_betas: Any = field(default="(0.9, 0.999)", metadata={"help": "betas (b1, b2)"})
    adahessian_eps: float = field(default=1e-4, metadata={"help": "eps, added after the Hessian power"})
    block_size: int = field(default=1, metadata={"help": "average |z*Hz| of 2-D weights over blocks of this size"})
    hessian_power: float = field(default=1.0, metadata={"help": "k in (sqrt(v_hat))^k + eps"})
    no_average_conv_kernel: bool = field(default=False, metadata={"help": "do not average conv kernels spatially"})


@dataclass
class FairseqSophiaHConfig(FairseqSecondOrderConfig):
    sophiah_betas: Any = field(default="(0.96, 0.99)", metadata={"help": "betas (b1, b2)"})
    sophiah_gamma: float = field(default=0.01, metadata={"help": "gamma in max(gamma * h, eps)"})
    sophiah_eps: float = field(default=1e-12, metadata={"help": "eps in max(gamma * h, eps)"})


class FairseqSecondOrder(FairseqOptimizer):
    """A :class:`optim.SecondOrderOptimizer` inside fairseq's training step (see the module docstring)."""

    inner: type[SecondOrderOptimizer]
    name: str

    def __init__(self, cfg, params):
        super().__init__(cfg)
        if cfg.fp16 or cfg.bf16 or cfg.amp:
            raise ValueError(f"optimizer {self.name} runs in fp32 only: fairseq's fp16/bf16/amp wrappers call "
                             "loss.backward themselves, which would skip the Hessian-vector product")
        if cfg.distributed_world_size > 1 and cfg.ddp_backend not in ("legacy_ddp", "no_c10d"):
            raise ValueError(f"optimizer {self.name} with several workers needs --ddp-backend legacy_ddp: the "
                             "Hessian-vector product uses autograd.grad, which c10d DDP's hooks never see")
        if cfg.loss_semantics not in LOSS_SEMANTICS:
            raise ValueError(f"loss_semantics={cfg.loss_semantics!r}; choose one of {LOSS_SEMANTICS}")
        if cfg.n_samples < 1:
            raise ValueError(f"n_samples={cfg.n_samples} must be >= 1")
        # The same seed on every worker: the same z everywhere (the generator state is saved with the optimizer).
        self._optimizer = self.inner(params, **self.optimizer_config, seed=int(cfg.hessian_seed))
        self.loss_semantics = str(cfg.loss_semantics)
        self.n_samples = int(cfg.n_samples)
        self._reset_accumulators()

    def _common_config(self) -> dict[str, Any]:
        return {"lr": self.cfg.lr[0], "weight_decay": self.cfg.weight_decay, "update_each": self.cfg.update_each,
                "hessian_warmup_steps": self.cfg.hessian_warmup_steps, "n_samples": self.cfg.n_samples}

    # -- bookkeeping ------------------------------------------------------------------------------------
    def _reset_accumulators(self) -> None:
        self._zs: list[list[torch.Tensor]] | None = None   # [sample][param]
        self._hz: list[list[torch.Tensor]] | None = None   # [sample][param], summed over micro-batches/workers
        self._grad_mult: Any = 1.0   # product of every factor fairseq applied to p.grad since backward
        self._reduced = False

    def _hessian_params(self) -> list[torch.Tensor]:
        return [p for p in self.params if p.requires_grad]

    def needs_hessian(self) -> bool:
        """Whether the coming update uses a Hessian estimate (so backward must build the double-backward graph)."""
        return bool(self._optimizer.needs_hessian())

    def _draw_z(self, params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        # Drawn once per update and reused for every micro-batch: sum_i H_i z = (sum_i H_i) z. The optimizer's
        # generator is seeded alike on every worker, so every worker draws the same z too.
        return [self._optimizer.draw_probes(params) for _ in range(self.n_samples)]

    # -- fairseq's hooks ----------------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        if not self.needs_hessian():
            loss.backward()
            return
        params = self._hessian_params()
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        if self._zs is None:
            self._zs = self._draw_z(params)
            self._hz = [[torch.zeros_like(p) for p in params] for _ in range(self.n_samples)]
        # Only gradients that depend on the parameters carry curvature; the others have H z = 0.
        if any(g is not None and g.requires_grad for g in grads):
            for j in range(self.n_samples):
                hz = hvp(grads, params, self._zs[j], retain_graph=j < self.n_samples - 1)
                for acc, h in zip(self._hz[j], hz):
                    acc.add_(h.detach())
        for p, g in zip(params, grads):
            if g is None:
                continue
            g = g.detach()
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.add_(g)
        del grads  # the double-backward graph goes with the last reference

    def all_reduce_grads(self, module):
        super().all_reduce_grads(module)
        if self._reduced or not (dist.is_available() and dist.is_initialized()):
            return
        world = dist.get_world_size()
        if world <= 1:
            return
        self._reduced = True
        if not hasattr(module, "all_reduce_grads"):
            raise RuntimeError("optimizer adahessian with several workers needs --ddp-backend legacy_ddp")
        self._grad_mult = self._grad_mult / world  # legacy_ddp averages the gradients
        if self._hz is not None:
            flat = torch.cat([h.reshape(-1) for hs in self._hz for h in hs])
            dist.all_reduce(flat)  # sum: H z of the loss summed over all workers' tokens
            offset = 0
            for hs in self._hz:
                for h in hs:
                    n = h.numel()
                    h.copy_(flat[offset:offset + n].view_as(h))
                    offset += n

    def multiply_grads(self, c):
        super().multiply_grads(c)
        self._grad_mult = self._grad_mult * c

    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        norm = super().clip_grad_norm(max_norm, aggregate_norm_fn)
        if max_norm > 0:
            coef = (float(max_norm) / (norm + 1e-6)).clamp(max=1.0)  # exactly fairseq's coefficient
            self._grad_mult = self._grad_mult * coef
        return norm

    def hessian_estimate(self) -> list[list[torch.Tensor]] | None:
        """The optimizer's single-probe estimate (``|z * H z|`` for AdaHessian) per sample and parameter, for the
        loss the configured semantics names (None: no estimate)."""
        if self._hz is None:
            return None
        scale = self._grad_mult if self.loss_semantics == "mean" else 1.0
        if torch.is_tensor(scale):
            scale = scale.abs()
        else:
            scale = abs(scale)
        return [[self._optimizer.probe_estimate(z, h).mul_(scale) for z, h in zip(zs, hs)]
                for zs, hs in zip(self._zs, self._hz)]

    def step(self, closure=None, scale=1.0, groups=None):
        if scale != 1.0:
            self.multiply_grads(1.0 / scale)
        if self.needs_hessian() and self._hz is None:
            raise RuntimeError(f"{self.name} expected a Hessian estimate for this update but backward() made none; "
                               "was loss.backward() called directly (fp16/amp wrapper, custom task)?")
        if self.loss_semantics == "authors":
            params = [p for p in self.params if p.grad is not None]
            if params:  # gradient of the summed loss, unclipped: undo every factor fairseq applied
                inv = 1.0 / self._grad_mult
                torch._foreach_mul_([p.grad for p in params], inv.to(params[0].device) if torch.is_tensor(inv) else inv)
        diag = self.hessian_estimate()
        if diag is not None:
            params = self._hessian_params()
            mean = [sum(ds[i] for ds in diag) / len(diag) for i in range(len(params))]
            # H z was summed over workers in all_reduce_grads: the estimate is already global.
            self._optimizer.supply_estimate({id(p): d for p, d in zip(params, mean)}, reduced=True)
        self._optimizer.step(closure)
        self._reset_accumulators()

    def zero_grad(self):
        super().zero_grad()
        self._reset_accumulators()


@register_optimizer("adahessian", dataclass=FairseqAdaHessianConfig)
class FairseqAdaHessian(FairseqSecondOrder):
    inner = AdaHessian
    name = "adahessian"

    @property
    def optimizer_config(self):
        return {
            **self._common_config(),
            "betas": _parse_betas(self.cfg.adahessian_betas),
            "eps": self.cfg.adahessian_eps,
            "hessian_power": self.cfg.hessian_power,
            "block_size": self.cfg.block_size,
            "average_conv_kernel": not self.cfg.no_average_conv_kernel,
        }


@register_optimizer("sophiah", dataclass=FairseqSophiaHConfig)
class FairseqSophiaH(FairseqSecondOrder):
    inner = SophiaH
    name = "sophiah"

    @property
    def optimizer_config(self):
        return {
            **self._common_config(),
            "betas": _parse_betas(self.cfg.sophiah_betas),
            "gamma": self.cfg.sophiah_gamma,
            "eps": self.cfg.sophiah_eps,
        }


@dataclass
class FairseqTorchAdamConfig(FairseqDataclass):
    adam_betas: Any = field(default="(0.9, 0.999)", metadata={"help": "betas for Adam"})
    adam_eps: float = field(default=1e-8, metadata={"help": "eps for Adam"})
    weight_decay: float = field(default=0.0, metadata={"help": "coupled L2 (added to the gradient)"})
    lr: List[float] = II("optimization.lr")


@register_optimizer("torch_adam", dataclass=FairseqTorchAdamConfig)
class FairseqTorchAdam(FairseqOptimizer):
    """torch.optim.Adam with coupled L2 weight decay (the suite's ``adam``; fairseq's ``adam`` is AdamW)."""

    def __init__(self, cfg: FairseqTorchAdamConfig, params):
        super().__init__(cfg)
        self._optimizer = torch.optim.Adam(params, **self.optimizer_config)

    @property
    def optimizer_config(self):
        return {
            "lr": self.cfg.lr[0],
            "betas": _parse_betas(self.cfg.adam_betas),
            "eps": self.cfg.adam_eps,
            "weight_decay": self.cfg.weight_decay,
        }
