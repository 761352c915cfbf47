"""AdaHessian (Yao et al., "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning", arXiv:2006.00719).

Only AdaHessian's math and validation live here: the step skeleton, the random probes, the GradScaler protocol,
the sub-batch and data-parallel estimate are :class:`optim.second_order.SecondOrderOptimizer`'s; the Hutchinson
estimator is :mod:`optim.hutchinson`, the spatial averaging :mod:`optim.spatial`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim.optimizer import ParamsT

from . import spatial
from .second_order import SecondOrderOptimizer, check_betas, check_int, check_real, state_dtype

__all__ = ["AdaHessian"]


class AdaHessian(SecondOrderOptimizer):
    r"""AdaHessian: Adam with the squared gradient replaced by a spatially averaged Hutchinson estimate of the
    Hessian diagonal.

    .. math::
       \begin{aligned}
         &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2, \epsilon, \lambda \text{ (weight decay)},
            k \text{ (hessian\_power)}, N \text{ (update\_each)}, W \text{ (hessian\_warmup\_steps)} \\
         &\textbf{for } t = 0, 1, \dots \textbf{ (one call of step())}: \\
         &\quad g_t = \nabla_\theta f(\theta_t) \\
         &\quad \textbf{if } t < W \textbf{ or } (t - W) \bmod N = 0 \text{ (a Hessian step)}: \\
         &\quad\quad D = \tfrac{1}{S}\textstyle\sum_{s=1}^{S} |z_s \odot H z_s|,
                     \quad z_s \sim \text{Rademacher} \quad (S = \text{n\_samples}) \\
         &\quad\quad D^{(s)} = \text{spatial\_average}(D) \quad
                     \text{(conv kernels: mean over dims} \geq 2 \text{; 2-D: blocks of block\_size)} \\
         &\quad\quad v \leftarrow \beta_2 v + (1 - \beta_2) (D^{(s)})^2, \quad \tau \leftarrow \tau + 1 \\
         &\quad m \leftarrow \beta_1 m + (1 - \beta_1) g_t \\
         &\quad \hat m = m / (1 - \beta_1^{t+1}), \quad \hat v = v / (1 - \beta_2^{\tau}) \\
         &\quad \theta_{t+1} = \theta_t - \gamma \lambda \theta_t - \gamma \hat m / (\hat v^{k/2} + \epsilon)
       \end{aligned}

    This is the update of the authors' code, which produced the published numbers: absolute value before spatial
    averaging, ``eps`` added after the power, decoupled weight decay. ``t`` counts calls to ``step()``; ``tau`` is
    counted per parameter (the Hessian steps on which it had a gradient), which equals the number of Hessian steps
    for every parameter that always gets a gradient.

    Usage::

        loss.backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad(set_to_none=True)

    Args:
        params: parameters or param-group dicts; every option below except ``seed`` and ``process_group`` can
            differ per param group.
        lr: learning rate (>= 0).
        betas: (beta1, beta2), each in [0, 1). A list is accepted (YAML).
        eps: added to the denominator after the power (>= 0).
        weight_decay: decoupled weight decay: ``p <- p - lr * weight_decay * p`` (>= 0).
        hessian_power: k in [0, 1]; 1 is the paper's default, 0.5 its language-model setting.
        block_size: block length for averaging 2-D tensors (>= 1; 1 = no averaging).
        average_conv_kernel: average the estimate of tensors with >= 3 dims over their spatial dims.
        update_each: draw a new estimate every N-th step after warm-up (>= 1); other steps reuse ``v`` and need
            only a plain ``backward()``.
        hessian_warmup_steps: the first W steps are all Hessian steps (>= 0).
        n_samples: Rademacher draws averaged per Hessian step (>= 1).
        foreach: use the multi-tensor ``torch._foreach_*`` path (None: on when every param is on CUDA).
        seed: seed of the optimizer's own generator for z (None: drawn from torch's global RNG at construction).
            Its state is saved in ``state_dict``, so a resumed run draws the same z as an uninterrupted one.
        process_group: group over which the estimate is averaged when ``torch.distributed`` runs with more than
            one rank (None: the default group).

    ``step(closure=None, *, hessian_grads=None, hessian_scale=None)``:
        ``hessian_grads``: a sequence aligned with ``[p for g in opt.param_groups for p in g["params"]]`` (None
        entries allowed) of graph-carrying gradients, e.g. ``torch.autograd.grad(sub_loss, params,
        create_graph=True)`` on part of the batch; the estimate then uses them while the update uses ``p.grad``
        (from a plain ``backward()`` on the full batch). Ignored on steps that are not Hessian steps.
        ``hessian_scale``: the factor by which the graph of the gradients is scaled (a loss scale). By default the
        ``grad_scale`` a ``torch.amp.GradScaler`` sets; needed only after an explicit ``scaler.unscale_(opt)``:
        ``scaler.step(opt, hessian_scale=scaler.get_scale())``.

    Mixed precision: works under ``torch.autocast``; with a ``GradScaler`` (``scaler.scale(loss).backward(
    create_graph=...)``, ``scaler.step(opt)``, ``scaler.update()``) both the gradient and the Hessian estimate are
    unscaled, and the whole step (counters and random draw included) is skipped when the scaler found inf/NaN.
    The Hessian-vector product runs on the scaled loss too and can overflow in fp16 where the gradients do not
    (it is S times the curvature); GradScaler checks only the gradients, so AdaHessian then skips the step itself
    and sets ``hessian_found_inf``. Call ``optim.update_scaler(scaler, opt)`` instead of ``scaler.update()`` so that
    the scale backs off in that case too (bf16 needs no scaler and has no such overflow).
    """

    probe_distribution = "rademacher"
    absolute_estimate = True  # the authors' code: |z * Hz| before spatial averaging
    extra_state_key = "adahessian"  # the name of the entry in checkpoints written before the base existed

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.15,
        betas: tuple[float, float] | Sequence[float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        hessian_power: float = 1.0,
        block_size: int = 1,
        average_conv_kernel: bool = True,
        update_each: int = 1,
        hessian_warmup_steps: int = 0,
        n_samples: int = 1,
        *,
        foreach: bool | None = None,
        seed: int | None = None,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, hessian_power=hessian_power,
                        block_size=block_size, average_conv_kernel=average_conv_kernel, update_each=update_each,
                        hessian_warmup_steps=hessian_warmup_steps, n_samples=n_samples, foreach=foreach)
        super().__init__(params, defaults, seed=seed, process_group=process_group)

    def validate_group(self, group: Mapping[str, Any]) -> None:
        check_real("AdaHessian", "lr", group["lr"], 0.0, math.inf)
        check_betas("AdaHessian", group["betas"])
        check_real("AdaHessian", "eps", group["eps"], 0.0, math.inf)
        check_real("AdaHessian", "weight_decay", group["weight_decay"], 0.0, math.inf)
        check_real("AdaHessian", "hessian_power", group["hessian_power"], 0.0, 1.0)
        check_int("AdaHessian", "block_size", group["block_size"], 1)
        if not isinstance(group["average_conv_kernel"], bool):
            raise ValueError(f"AdaHessian: invalid average_conv_kernel={group['average_conv_kernel']!r}; "
                             "allowed: True or False")

    def compress_estimate(self, d: Tensor, group: Mapping[str, Any]) -> Tensor:
        return spatial.compress(d, group["block_size"], group["average_conv_kernel"])

    def update_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                     estimates: list[Tensor | None], *, step: int) -> None:
        ps, gs, ms, vs, cs, taus = [], [], [], [], [], []
        for p, g, c in zip(params, grads, estimates):
            state = self.state.get(p)
            if c is None and (not state or state["hessian_step"] == 0):
                # No curvature estimate yet (first gradient on an off-step): v = 0 would divide by eps.
                continue
            if not state:
                state = self.state[p]
                state["exp_avg"] = torch.zeros_like(p, dtype=state_dtype(p), memory_format=torch.preserve_format)
                state["exp_hessian_diag_sq"] = torch.zeros_like(p, dtype=state_dtype(p),
                                                                memory_format=torch.preserve_format)
                state["hessian_step"] = 0
            if c is not None:
                state["hessian_step"] += 1
            ps.append(p)
            gs.append(g)
            ms.append(state["exp_avg"])
            vs.append(state["exp_hessian_diag_sq"])
            cs.append(c)
            taus.append(state["hessian_step"])
        if not ps:
            return
        fn = _multi_tensor_adahessian if self.use_foreach(group, ps) else _single_tensor_adahessian
        beta1, beta2 = group["betas"]
        fn(ps, gs, ms, vs, cs, taus, t=step, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
           weight_decay=group["weight_decay"], hessian_power=group["hessian_power"],
           block_size=group["block_size"], average_conv_kernel=group["average_conv_kernel"])


def _single_tensor_adahessian(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                              exp_hessian_diag_sqs: list[Tensor], estimates: list[Tensor | None],
                              hessian_steps: list[int], *, t: int, lr: float, beta1: float, beta2: float,
                              eps: float, weight_decay: float, hessian_power: float, block_size: int,
                              average_conv_kernel: bool) -> None:
    step_size = lr / (1 - beta1 ** (t + 1))
    for p, g, m, v, c, tau in zip(params, grads, exp_avgs, exp_hessian_diag_sqs, estimates, hessian_steps):
        p32 = p.float() if p.dtype != m.dtype else p  # half params: update a float32 copy, then round once
        g = g.to(m.dtype)
        m.lerp_(g, 1 - beta1)
        if c is not None:
            d = spatial.expand(c, p.shape, block_size, average_conv_kernel)
            v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        # (v / bc2)^(k/2) + eps == (v^(k/2) + eps * bc2^(k/2)) / bc2^(k/2): the bias correction folds into eps and
        # the step size, one pass over the tensor less (as torch's Adam does).
        bc2_k = (1 - beta2**tau) ** (hessian_power / 2)
        denom = v.sqrt() if hessian_power == 1 else v.pow(hessian_power / 2)
        denom.add_(eps * bc2_k)
        if weight_decay != 0:
            p32.mul_(1 - lr * weight_decay)
        p32.addcdiv_(m, denom, value=-step_size * bc2_k)
        if p32 is not p:
            p.copy_(p32)


def _multi_tensor_adahessian(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                             exp_hessian_diag_sqs: list[Tensor], estimates: list[Tensor | None],
                             hessian_steps: list[int], *, t: int, lr: float, beta1: float, beta2: float,
                             eps: float, weight_decay: float, hessian_power: float, block_size: int,
                             average_conv_kernel: bool) -> None:
    step_size = lr / (1 - beta1 ** (t + 1))
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        buckets.setdefault((p.device, p.dtype), []).append(i)
    for idx in buckets.values():
        ps = [params[i] for i in idx]
        ms = [exp_avgs[i] for i in idx]
        vs = [exp_hessian_diag_sqs[i] for i in idx]
        half = ps[0].dtype != ms[0].dtype
        gs = [grads[i].to(ms[0].dtype) for i in idx]
        torch._foreach_lerp_(ms, gs, 1 - beta1)
        hess = [i for i in idx if estimates[i] is not None]
        if hess:
            vh = [exp_hessian_diag_sqs[i] for i in hess]
            dh = [spatial.expand(estimates[i], params[i].shape, block_size, average_conv_kernel)  # type: ignore
                  for i in hess]
            torch._foreach_mul_(vh, beta2)
            torch._foreach_addcmul_(vh, dh, dh, value=1 - beta2)
        bc2_k = [(1 - beta2 ** hessian_steps[i]) ** (hessian_power / 2) for i in idx]  # as in the per-tensor path
        denoms = torch._foreach_sqrt(vs) if hessian_power == 1 else torch._foreach_pow(vs, hessian_power / 2)
        torch._foreach_add_(denoms, [eps * b for b in bc2_k])
        p32 = [p.float() for p in ps] if half else ps
        if weight_decay != 0:
            torch._foreach_mul_(p32, 1 - lr * weight_decay)
        torch._foreach_addcdiv_(p32, ms, denoms, [-step_size * b for b in bc2_k])
        if half:
            torch._foreach_copy_(ps, p32)
