"""AdaHessian (Yao et al., "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning", arXiv:2006.00719).

The moment update lives here; the Hutchinson estimator is in :mod:`optim.hutchinson`, the spatial averaging in
:mod:`optim.spatial` and the cross-rank averaging in :mod:`optim.distributed`, so each can be tested alone.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT, _default_to_fused_or_foreach

from . import spatial
from .distributed import allreduce_mean_, is_distributed
from .hutchinson import MissingGraphError, diag_estimate

__all__ = ["AdaHessian"]

_HALF = (torch.float16, torch.bfloat16)


def _state_dtype(p: Tensor) -> torch.dtype:
    # Moments of half-precision params are kept in float32 (v holds squares of curvatures, which overflow
    # float16 and lose most of their bits in bfloat16); float32/float64 params keep their own dtype.
    return torch.float32 if p.dtype in _HALF else p.dtype


def _check_real(name: str, value: Any, lo: float, hi: float, hi_open: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and lo <= value and (
        value < hi if hi_open else value <= hi)
    if not ok:
        rng = f"[{lo}, {hi})" if hi_open else f"[{lo}, {'inf' if math.isinf(hi) else hi}]"
        raise ValueError(f"AdaHessian: invalid {name}={value!r}; allowed range is {rng}")


def _check_int(name: str, value: Any, lo: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < lo:
        raise ValueError(f"AdaHessian: invalid {name}={value!r}; allowed: an integer in [{lo}, inf)")


def _validate_group(group: Mapping[str, Any]) -> None:
    _check_real("lr", group["lr"], 0.0, math.inf)
    betas = group["betas"]
    if not isinstance(betas, Sequence) or isinstance(betas, str) or len(betas) != 2:
        raise ValueError(f"AdaHessian: invalid betas={betas!r}; allowed: two numbers, each in [0, 1)")
    _check_real("betas[0]", betas[0], 0.0, 1.0, hi_open=True)
    _check_real("betas[1]", betas[1], 0.0, 1.0, hi_open=True)
    _check_real("eps", group["eps"], 0.0, math.inf)
    _check_real("weight_decay", group["weight_decay"], 0.0, math.inf)
    _check_real("hessian_power", group["hessian_power"], 0.0, 1.0)
    _check_int("block_size", group["block_size"], 1)
    _check_int("update_each", group["update_each"], 1)
    _check_int("hessian_warmup_steps", group["hessian_warmup_steps"], 0)
    _check_int("n_samples", group["n_samples"], 1)
    if not isinstance(group["average_conv_kernel"], bool):
        raise ValueError(f"AdaHessian: invalid average_conv_kernel={group['average_conv_kernel']!r}; "
                         "allowed: True or False")
    if group["foreach"] not in (None, True, False):
        raise ValueError(f"AdaHessian: invalid foreach={group['foreach']!r}; allowed: None, True or False")


def _is_hessian_step(group: Mapping[str, Any], t: int) -> bool:
    warmup = group["hessian_warmup_steps"]
    return t < warmup or (t - warmup) % group["update_each"] == 0


def _release_graph_(p: Tensor) -> None:
    # backward(create_graph=True) makes p.grad hold a graph that holds p (through its AccumulateGrad node): a
    # reference cycle through C++ that Python's GC cannot collect, keeping every activation of the step alive.
    # Replacing .grad by its detached value (same storage, no copy) breaks it.
    if p.grad is not None and p.grad.requires_grad:
        p.grad = p.grad.detach()


def _release_graphs_(param_groups: Sequence[Mapping[str, Any]]) -> None:
    """``_release_graph_`` on every parameter of ``param_groups``."""
    for g in param_groups:
        for p in g["params"]:
            _release_graph_(p)


def _inverse(scale: Tensor | float) -> Tensor | float:
    if isinstance(scale, Tensor):
        # As GradScaler does: reciprocal in float64 so that 1/S is exact for power-of-two scales.
        return scale.double().reciprocal().float()
    return 1.0 / float(scale)


def _mul_(tensors: Sequence[Tensor], factor: Tensor | float) -> None:
    """In-place ``t *= factor`` with one foreach kernel per device (``factor`` may live on another device)."""
    by_device: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        by_device.setdefault(t.device, []).append(t)
    for device, ts in by_device.items():
        torch._foreach_mul_(ts, factor.to(device) if isinstance(factor, Tensor) else factor)


class AdaHessian(Optimizer):
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

    # GradScaler.step hands such optimizers the scale (``grad_scale``) and the inf flag (``found_inf``) instead of
    # unscaling .grad itself; that is the only way to learn the scale, which the Hessian estimate also carries.
    _step_supports_amp_scaling = True

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
        _validate_group(defaults)
        if seed is not None:
            _check_int("seed", seed, 0)
        else:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self._t = 0  # calls of step() that were applied (not skipped by a GradScaler)
        self._seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}
        self._pending_rng: dict[str, Tensor] = {}  # generator states loaded before their device was first used
        self._process_group = process_group
        self._rng_before_draw: dict[str, Tensor] | None = None
        # True when the last step() was skipped because the Hessian estimate was inf/NaN under a GradScaler.
        self.hessian_found_inf = False
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ configuration
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        merged = {**self.defaults, **param_group}
        if isinstance(merged["betas"], Sequence) and not isinstance(merged["betas"], str):
            merged["betas"] = tuple(merged["betas"])
            if "betas" in param_group:
                param_group["betas"] = merged["betas"]
        _validate_group(merged)
        super().add_param_group(param_group)

    def needs_hessian(self) -> bool:
        """Whether the next ``step()`` draws a new Hessian estimate (so ``backward`` needs ``create_graph``)."""
        return any(_is_hessian_step(g, self._t) for g in self.param_groups if g["params"])

    @property
    def step_count(self) -> int:
        """Number of applied ``step()`` calls (t in the docstring)."""
        return self._t

    # ------------------------------------------------------------------ random stream
    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            # One stream per device, all derived from the optimizer's seed (crc32: stable across processes).
            gen.manual_seed((self._seed + zlib.crc32(key.encode())) % 2**63)
            if key in self._pending_rng:
                gen.set_state(self._pending_rng.pop(key))
            self._generators[key] = gen
        return gen

    # ------------------------------------------------------------------ step
    def step(self, closure: Callable[[], Any] | None = None, *, hessian_grads: Sequence[Tensor | None] | None = None,
             hessian_scale: Tensor | float | None = None) -> Any:
        """One AdaHessian update; see the class docstring for ``hessian_grads`` and ``hessian_scale``."""
        loss = None
        self.hessian_found_inf = False
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and bool(found_inf):
            # GradScaler found inf/NaN in the gradients: skip everything, as its default path does.
            _release_graphs_(self.param_groups)
            return loss
        estimates = self._estimate(hessian_grads, hessian_scale, grad_scale, found_inf is not None)
        self.hessian_found_inf = estimates is None
        if estimates is None:
            # The Hessian-vector product of the scaled loss overflowed (fp16). GradScaler checked only .grad, so
            # it cannot know: skip the step as it would, and let the caller back the scale off (amp.update_scaler).
            self._undo_draw()
            _release_graphs_(self.param_groups)
            return loss
        self._update(estimates, grad_scale)
        return loss

    def _estimate(self, hessian_grads: Sequence[Tensor | None] | None, hessian_scale: Tensor | float | None,
                  grad_scale: Tensor | float | None, under_scaler: bool) -> dict[int, Tensor] | None:
        """Compressed (spatially averaged, rank-averaged, unscaled) estimates, keyed by id(param), for the params
        of this step's Hessian groups. Done before any parameter moves: the double-backward graph may have saved
        them, and an in-place update would invalidate it.

        Under a GradScaler, None when an estimate is inf/NaN (``_undo_draw`` then puts the random stream back)."""
        self._rng_before_draw = None
        t = self._t
        if hessian_grads is not None:
            all_params = [p for g in self.param_groups for p in g["params"]]
            hessian_grads = list(hessian_grads)
            if len(hessian_grads) != len(all_params):
                raise ValueError(f"hessian_grads has {len(hessian_grads)} entries; expected one per parameter "
                                 f"({len(all_params)}), aligned with the param groups")
            sub = {id(p): h for p, h in zip(all_params, hessian_grads)}
        params, outputs, counts, groups = [], [], [], []
        for group in self.param_groups:
            if not _is_hessian_step(group, t):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdaHessian does not support sparse gradients")
                params.append(p)
                outputs.append(p.grad if hessian_grads is None else sub[id(p)])
                counts.append(group["n_samples"])
                groups.append(group)
        if not params:
            return {}
        scale = hessian_scale if hessian_scale is not None else grad_scale
        if scale is None and under_scaler:
            raise RuntimeError(
                "AdaHessian: the GradScaler unscaled the gradients before step() (explicit scaler.unscale_), so "
                "the loss scale that the Hessian estimate carries is unknown. Pass it: "
                "scaler.step(opt, hessian_scale=scaler.get_scale()).")
        if under_scaler:
            self._rng_before_draw = self._rng_states({p.device for p in params})
        try:
            ds = diag_estimate(outputs, params, n_samples=counts, generator=self._generator)
        except MissingGraphError as e:
            source = "hessian_grads" if hessian_grads is not None else "the parameters' .grad"
            raise MissingGraphError(f"AdaHessian step {t} is a Hessian step but {source} carry no graph. {e}") \
                from None
        if scale is not None:
            _mul_(ds, _inverse(scale))
        cs = [spatial.compress(d, g["block_size"], g["average_conv_kernel"]) for d, g in zip(ds, groups)]
        del ds
        if is_distributed(self._process_group):
            # Every rank must end with the same estimate: the mean of the local ones, in one collective.
            allreduce_mean_(cs, group=self._process_group)
        if under_scaler and not bool(torch.stack([c.isfinite().all() for c in cs]).all()):
            # After the all-reduce: a NaN on one rank reaches every rank, so all of them skip together.
            return None
        return {id(p): c for p, c in zip(params, cs)}

    def _rng_states(self, devices: set[torch.device]) -> dict[str, Tensor]:
        for d in devices:
            self._generator(d)
        return {k: g.get_state() for k, g in self._generators.items()}

    def _undo_draw(self) -> None:
        """Put the z stream back to before the last ``_estimate`` (a skipped step draws nothing, as on CPU)."""
        for key, state in (getattr(self, "_rng_before_draw", None) or {}).items():
            self._generators[key].set_state(state)

    @torch.no_grad()
    def _update(self, estimates: Mapping[int, Tensor], grad_scale: Tensor | float | None) -> None:
        t = self._t
        inv = None if grad_scale is None else _inverse(grad_scale)
        for group in self.param_groups:
            params, grads, ms, vs, cs, taus = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                _release_graph_(p)
                c = estimates.get(id(p))
                state = self.state.get(p)
                if c is None and (not state or state["hessian_step"] == 0):
                    # No curvature estimate yet (first gradient on an off-step): v = 0 would divide by eps.
                    continue
                if not state:
                    state = self.state[p]
                    state["exp_avg"] = torch.zeros_like(p, dtype=_state_dtype(p),
                                                        memory_format=torch.preserve_format)
                    state["exp_hessian_diag_sq"] = torch.zeros_like(p, dtype=_state_dtype(p),
                                                                    memory_format=torch.preserve_format)
                    state["hessian_step"] = 0
                if c is not None:
                    state["hessian_step"] += 1
                params.append(p)
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_hessian_diag_sq"])
                cs.append(c)
                taus.append(state["hessian_step"])
            if not params:
                continue
            if inv is not None:
                _mul_(grads, inv)
            foreach = group["foreach"]
            if foreach is None:
                foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)[1]
            fn = _multi_tensor_adahessian if foreach else _single_tensor_adahessian
            beta1, beta2 = group["betas"]
            fn(params, grads, ms, vs, cs, taus, t=t, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
               weight_decay=group["weight_decay"], hessian_power=group["hessian_power"],
               block_size=group["block_size"], average_conv_kernel=group["average_conv_kernel"])
        self._t += 1

    # ------------------------------------------------------------------ persistence
    def _extra_state(self) -> dict[str, Any]:
        rng = dict(self._pending_rng)
        rng.update({k: g.get_state() for k, g in self._generators.items()})
        return {"step": self._t, "seed": self._seed, "rng": rng}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self._t = int(extra["step"])
        self._seed = int(extra["seed"])
        self._generators = {}
        self._pending_rng = {k: v.clone() for k, v in extra["rng"].items()}

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["adahessian"] = self._extra_state()
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("adahessian", None)
        super().load_state_dict(state_dict)
        # torch casts floating state to the param's dtype; put back the float32 moments of half params.
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        current = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, current):
            saved = state_dict["state"].get(pid)
            if saved is None or p.dtype not in _HALF:
                continue
            for key, value in saved.items():
                if isinstance(value, Tensor) and value.is_floating_point():
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32, copy=True)
        if extra is not None:
            self._load_extra_state(extra)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_adahessian_extra"] = self._extra_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        extra = state.pop("_adahessian_extra", None)
        super().__setstate__(state)
        self.__dict__.setdefault("_process_group", None)
        if extra is not None:
            self._load_extra_state(extra)


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
