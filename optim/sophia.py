"""Sophia-H (Liu et al., "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training",
arXiv:2305.14342): Sophia with its Hutchinson estimator, on :class:`optim.second_order.SecondOrderOptimizer`.

Only the math and the validation live here; the estimate (Gaussian probes, Hessian-vector products), the step
skeleton, GradScaler, sub-batch and data-parallel handling are the base's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim.optimizer import ParamsT

from .second_order import SecondOrderOptimizer, check_betas, check_real, state_dtype

__all__ = ["SophiaH"]


class SophiaH(SecondOrderOptimizer):
    r"""Sophia-H: an EMA of the gradient divided element-wise by an EMA of a Hutchinson estimate of the Hessian
    diagonal refreshed every k steps, clipped element-wise to [-1, 1].

    .. math::
       \begin{aligned}
         &\textbf{input}: \eta \text{ (lr)}, \beta_1, \beta_2, \gamma, \epsilon, \lambda \text{ (weight decay)},
            k \text{ (update\_each)}, \quad m_0 = 0, \; h_0 = 0 \\
         &\textbf{for } t = 0, 1, \dots \textbf{ (one call of step())}: \\
         &\quad g_t = \nabla_\theta L(\theta_t), \quad m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
         &\quad \textbf{if } t \bmod k = 0: \quad \hat h_t = u \odot (\nabla^2 L(\theta_t)\, u), \;
                u \sim \mathcal N(0, I), \quad h_t = \beta_2 h_{t-k} + (1 - \beta_2) \hat h_t \\
         &\quad \textbf{else}: \quad h_t = h_{t-1} \\
         &\quad \theta_t \leftarrow \theta_t - \eta \lambda \theta_t \\
         &\quad \theta_{t+1} = \theta_t - \eta \cdot \mathrm{clip}\big(m_t / \max(\gamma h_t, \epsilon), 1\big),
                \quad \mathrm{clip}(z, 1) = \max(\min(z, 1), -1)
       \end{aligned}

    This is Algorithm 3 of the paper with the Hutchinson estimator of its Algorithm 1 (the paper counts t from 1
    and refreshes h when ``t mod k = 1``: the same steps). The estimate is signed (no absolute value): a negative
    h makes ``max(gamma h, eps) = eps`` and the coordinate's step saturates at ``lr * sign(m)``. There is no bias
    correction and no spatial averaging. ``hessian_warmup_steps`` (every step a Hessian step during the first W)
    and ``n_samples`` (probes averaged per estimate) are the base's options; the paper has W = 0, one probe.

    Where the authors' released code differs (github.com/Liuhong99/Sophia, ``sophia.py``: the SophiaH class of
    commit 01af183; later versions, e.g. 195a786, ship only Sophia-G): it divides by ``gamma * relu(h) + 1e-12``
    instead of ``max(gamma * h, eps)``, bias-corrects m by ``1 - beta1^t``, and takes the estimate from the caller (no
    estimator inside), with defaults ``lr=1e-3, betas=(0.9, 0.99), weight_decay=1e-2`` under another
    parameterization of gamma. This class follows the paper.

    Paper defaults (Sec. 3.1, "For Sophia, we use beta1 = 0.96, beta2 = 0.99, eps = 1e-12 and update diagonal
    Hessian every 10 steps"; gamma = 0.01 for Sophia-H in the ICLR 2024 text, whose clip is the one above; v1 of the
    paper clips at a threshold rho instead). The paper tunes lr and weight decay per GPT-2 size only;
    the suite's per-task values are in conf/task_optim/<task>_sophiah.yaml with their sources.

    Args:
        params: parameters or param-group dicts; every option below except ``seed`` and ``process_group`` can
            differ per param group.
        lr: learning rate eta (>= 0): the largest step of a coordinate.
        betas: (beta1, beta2), each in [0, 1). A list is accepted (YAML).
        gamma: scale of the curvature in the denominator (>= 0).
        eps: floor of the denominator (> 0).
        weight_decay: decoupled weight decay lambda: ``p <- p - lr * weight_decay * p`` (>= 0).
        update_each: k, a new estimate every k-th step (>= 1); other steps need only a plain ``backward()``.
        hessian_warmup_steps: the first W steps are all Hessian steps (>= 0).
        n_samples: Gaussian probes averaged per estimate (>= 1).
        foreach: use the multi-tensor ``torch._foreach_*`` path (None: on when every param is on CUDA).
        seed, process_group: as :class:`optim.second_order.SecondOrderOptimizer`.
    """

    probe_distribution = "gaussian"  # Algorithm 1: u ~ N(0, I_d)
    absolute_estimate = False  # u * (H u), signed and unbiased

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] | Sequence[float] = (0.96, 0.99),
        gamma: float = 0.01,
        eps: float = 1e-12,
        weight_decay: float = 0.0,
        update_each: int = 10,
        hessian_warmup_steps: int = 0,
        n_samples: int = 1,
        *,
        foreach: bool | None = None,
        seed: int | None = None,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, gamma=gamma, eps=eps, weight_decay=weight_decay,
                        update_each=update_each, hessian_warmup_steps=hessian_warmup_steps, n_samples=n_samples,
                        foreach=foreach)
        super().__init__(params, defaults, seed=seed, process_group=process_group)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        check_real("SophiaH", "lr", group["lr"], 0.0, math.inf)
        check_betas("SophiaH", group["betas"])
        check_real("SophiaH", "gamma", group["gamma"], 0.0, math.inf)
        check_real("SophiaH", "eps", group["eps"], 0.0, math.inf, lo_open=True)  # the denominator's floor
        check_real("SophiaH", "weight_decay", group["weight_decay"], 0.0, math.inf)

    def update_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                     estimates: list[Tensor | None], *, step: int) -> None:
        ms, hs = [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p, dtype=state_dtype(p), memory_format=torch.preserve_format)
                state["hessian"] = torch.zeros_like(p, dtype=state_dtype(p), memory_format=torch.preserve_format)
                state["hessian_step"] = 0
            ms.append(state["exp_avg"])
            hs.append(state["hessian"])
        for p, c in zip(params, estimates):
            if c is not None:
                self.state[p]["hessian_step"] += 1
        fn = _multi_tensor_sophiah if self.use_foreach(group, params) else _single_tensor_sophiah
        beta1, beta2 = group["betas"]
        fn(params, grads, ms, hs, estimates, lr=group["lr"], beta1=beta1, beta2=beta2, gamma=group["gamma"],
           eps=group["eps"], weight_decay=group["weight_decay"])


def _single_tensor_sophiah(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], hessians: list[Tensor],
                           estimates: list[Tensor | None], *, lr: float, beta1: float, beta2: float, gamma: float,
                           eps: float, weight_decay: float) -> None:
    for p, g, m, h, c in zip(params, grads, exp_avgs, hessians, estimates):
        p32 = p.float() if p.dtype != m.dtype else p  # half params: update a float32 copy, then round once
        m.lerp_(g.to(m.dtype), 1 - beta1)
        if c is not None:
            h.lerp_(c.to(h.dtype), 1 - beta2)
        ratio = m / (h * gamma).clamp_(min=eps)
        ratio.clamp_(-1.0, 1.0)
        if weight_decay != 0:
            p32.mul_(1 - lr * weight_decay)
        p32.add_(ratio, alpha=-lr)
        if p32 is not p:
            p.copy_(p32)


def _multi_tensor_sophiah(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], hessians: list[Tensor],
                          estimates: list[Tensor | None], *, lr: float, beta1: float, beta2: float, gamma: float,
                          eps: float, weight_decay: float) -> None:
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        buckets.setdefault((p.device, p.dtype), []).append(i)
    for idx in buckets.values():
        ps = [params[i] for i in idx]
        ms = [exp_avgs[i] for i in idx]
        hs = [hessians[i] for i in idx]
        half = ps[0].dtype != ms[0].dtype
        torch._foreach_lerp_(ms, [grads[i].to(ms[0].dtype) for i in idx], 1 - beta1)
        fresh = [i for i in idx if estimates[i] is not None]
        if fresh:
            torch._foreach_lerp_([hessians[i] for i in fresh],
                                 [estimates[i].to(hessians[i].dtype) for i in fresh], 1 - beta2)  # type: ignore
        denoms = torch._foreach_mul(hs, gamma)
        torch._foreach_clamp_min_(denoms, eps)
        ratios = torch._foreach_div(ms, denoms)
        torch._foreach_clamp_min_(ratios, -1.0)
        torch._foreach_clamp_max_(ratios, 1.0)
        p32 = [p.float() for p in ps] if half else ps
        if weight_decay != 0:
            torch._foreach_mul_(p32, 1 - lr * weight_decay)
        torch._foreach_add_(p32, ratios, alpha=-lr)
        if half:
            torch._foreach_copy_(ps, p32)
