"""The machinery every Hutchinson-type optimizer shares, as a public base class.

:class:`SecondOrderOptimizer` owns everything that is not an optimizer's math:

- the step skeleton: which steps are Hessian steps (``update_each``, ``hessian_warmup_steps``), ``needs_hessian()``,
  the step counter, closures;
- the random probes: one generator per device, derived from the optimizer's seed, saved in ``state_dict`` (a
  resumed run draws the same z as an uninterrupted one), and the undo of a draw for a skipped step;
- the estimate: from the parameters' graph-carrying ``.grad`` or from a sub-batch's ``hessian_grads``, or supplied
  from outside (:meth:`supply_estimate`, e.g. computed during fairseq's backward), averaged over data-parallel ranks;
- the fp16 ``GradScaler`` protocol: ``grad_scale``/``found_inf``, unscaling gradient and estimate, the skip of a
  step whose Hessian-vector product overflowed (``hessian_found_inf``; :func:`optim.amp.update_scaler` backs off);
- releasing the double-backward graphs.

A subclass supplies only its math: the estimator (:attr:`probe_distribution`, :attr:`absolute_estimate`,
:meth:`compress_estimate`), the validation of its options (:meth:`validate_group`) and the update of one param
group from gradients and estimates (:meth:`update_group`, where it keeps its curvature state). See
:class:`optim.AdaHessian` and :class:`optim.SophiaH`, and docs/extending.md.

The step is public in two phases so that several optimizers can be stepped as one (:class:`optim.CombinedOptimizer`)
without any parameter moving before every Hessian-vector product is taken::

    est = opt.estimate_hessian(hessian_grads, grad_scale=..., under_scaler=...)   # phase 1: nothing moves
    if est is None: opt.undo_draw()                                                # HVP overflowed: skip
    else: opt.apply_update(est, grad_scale=...)                                    # phase 2: the update
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

from .distributed import allreduce_mean_, is_distributed
from .hutchinson import DISTRIBUTIONS, MissingGraphError, diag_estimate, probe_like

__all__ = ["SecondOrderOptimizer", "release_graphs_", "state_dtype", "check_real", "check_int", "check_betas",
           "inverse_scale", "mul_"]

HALF = (torch.float16, torch.bfloat16)
_BASE_KEYS = ("update_each", "hessian_warmup_steps", "n_samples", "foreach")


def state_dtype(p: Tensor) -> torch.dtype:
    """dtype of a parameter's optimizer state: float32 for half params (squares and ratios of curvatures overflow
    float16 and lose most of their bits in bfloat16), the param's own dtype otherwise."""
    return torch.float32 if p.dtype in HALF else p.dtype


def check_real(owner: str, name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
               hi_open: bool = False) -> None:
    """ValueError naming ``owner``, ``name``, the bad value and the allowed range unless lo <= value <= hi."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi))
    if not ok:
        hi_s = "inf" if math.isinf(hi) else hi
        rng = f"{'(' if lo_open else '['}{lo}, {hi_s}{')' if hi_open else ']'}"
        raise ValueError(f"{owner}: invalid {name}={value!r}; allowed range is {rng}")


def check_int(owner: str, name: str, value: Any, lo: int) -> None:
    """ValueError unless ``value`` is an integer >= lo."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{owner}: invalid {name}={value!r}; allowed: an integer in [{lo}, inf)")


def check_betas(owner: str, betas: Any) -> None:
    """ValueError unless ``betas`` is two numbers, each in [0, 1)."""
    if not isinstance(betas, Sequence) or isinstance(betas, str) or len(betas) != 2:
        raise ValueError(f"{owner}: invalid betas={betas!r}; allowed: two numbers, each in [0, 1)")
    check_real(owner, "betas[0]", betas[0], 0.0, 1.0, hi_open=True)
    check_real(owner, "betas[1]", betas[1], 0.0, 1.0, hi_open=True)


def _release_graph_(p: Tensor) -> None:
    # backward(create_graph=True) makes p.grad hold a graph that holds p (through its AccumulateGrad node): a
    # reference cycle through C++ that Python's GC cannot collect, keeping every activation of the step alive.
    # Replacing .grad by its detached value (same storage, no copy) breaks it.
    if p.grad is not None and p.grad.requires_grad:
        p.grad = p.grad.detach()


def release_graphs_(param_groups: Sequence[Mapping[str, Any]]) -> None:
    """Detach every ``p.grad`` of ``param_groups`` that carries a graph (breaks the p <-> p.grad cycle)."""
    for g in param_groups:
        for p in g["params"]:
            _release_graph_(p)


def inverse_scale(scale: Tensor | float) -> Tensor | float:
    """1 / scale; for a tensor in float64 first, as GradScaler does, so that 1/S is exact for powers of two."""
    if isinstance(scale, Tensor):
        return scale.double().reciprocal().float()
    return 1.0 / float(scale)


def mul_(tensors: Sequence[Tensor], factor: Tensor | float) -> None:
    """In-place ``t *= factor`` with one foreach kernel per device (``factor`` may live on another device)."""
    by_device: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        by_device.setdefault(t.device, []).append(t)
    for device, ts in by_device.items():
        torch._foreach_mul_(ts, factor.to(device) if isinstance(factor, Tensor) else factor)


class SecondOrderOptimizer(Optimizer):
    """Base of the suite's Hutchinson-type optimizers; see the module docstring.

    Every param group holds ``update_each`` (>= 1), ``hessian_warmup_steps`` (>= 0), ``n_samples`` (>= 1) and
    ``foreach`` (None/True/False) besides the subclass's own options: step ``t`` (0-based count of applied steps)
    is a Hessian step of a group when ``t < hessian_warmup_steps or (t - hessian_warmup_steps) % update_each == 0``.

    Usage (any subclass)::

        loss.backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad(set_to_none=True)

    ``step(closure=None, *, hessian_grads=None, hessian_scale=None)``:
        ``hessian_grads``: a sequence aligned with ``[p for g in opt.param_groups for p in g["params"]]`` (None
        entries allowed) of graph-carrying gradients, e.g. ``torch.autograd.grad(sub_loss, params,
        create_graph=True)`` on part of the batch; the estimate then uses them while the update uses ``p.grad``.
        Ignored on steps that are not Hessian steps.
        ``hessian_scale``: the factor by which the graph of the gradients is scaled (a loss scale). By default the
        ``grad_scale`` a ``torch.amp.GradScaler`` sets; needed only after an explicit ``scaler.unscale_(opt)``.

    Mixed precision: with a ``GradScaler`` both the gradient and the estimate are unscaled, and the whole step
    (counter and random draw included) is skipped when the scaler found inf/NaN. The Hessian-vector product of the
    scaled loss can overflow in fp16 where the gradients do not; the step is then skipped here and
    ``hessian_found_inf`` set: call ``optim.update_scaler(scaler, opt)`` instead of ``scaler.update()``.
    """

    #: distribution of the probe vectors z (one of ``optim.hutchinson.DISTRIBUTIONS``)
    probe_distribution: str = "rademacher"
    #: estimate |z * Hz| (True) or the unbiased z * Hz (False)
    absolute_estimate: bool = True
    #: key of the base's own entry in ``state_dict()``
    extra_state_key: str = "second_order"

    # GradScaler.step hands such optimizers the scale (``grad_scale``) and the inf flag (``found_inf``) instead of
    # unscaling .grad itself; that is the only way to learn the scale, which the Hessian estimate also carries.
    _step_supports_amp_scaling = True

    def __init__(self, params: ParamsT, defaults: dict[str, Any], *, seed: int | None = None,
                 process_group: dist.ProcessGroup | None = None) -> None:
        missing = [k for k in _BASE_KEYS if k not in defaults]
        if missing:
            raise TypeError(f"{type(self).__name__}: defaults lack the base's keys {missing}")
        if self.probe_distribution not in DISTRIBUTIONS:
            raise TypeError(f"{type(self).__name__}.probe_distribution={self.probe_distribution!r}; "
                            f"allowed: {', '.join(DISTRIBUTIONS)}")
        defaults = self._normalized(dict(defaults))
        self._validate(defaults)
        if seed is not None:
            check_int(type(self).__name__, "seed", seed, 0)
        else:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self._t = 0  # calls of step() that were applied (not skipped by a GradScaler)
        self._seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}
        self._pending_rng: dict[str, Tensor] = {}  # generator states loaded before their device was first used
        self._process_group = process_group
        self._rng_before_draw: dict[str, Tensor] | None = None
        self._supplied: dict[int, Tensor] | None = None
        # True when the last step() was skipped because the Hessian estimate was inf/NaN under a GradScaler.
        self.hessian_found_inf = False
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ what a subclass supplies
    def validate_group(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError (naming the option, the bad value and what is allowed) for a bad option of the
        subclass. The base checks its own keys."""

    def compress_estimate(self, d: Tensor, group: Mapping[str, Any]) -> Tensor:
        """The estimate ``d`` of one parameter in the form :meth:`update_group` receives it, e.g. spatially
        averaged at reduced size (what is all-reduced across ranks). Default: ``d`` itself."""
        return d

    def update_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                     estimates: list[Tensor | None], *, step: int) -> None:
        """Update ``params`` (those of ``group`` with a gradient) in place, under ``no_grad``.

        ``grads`` are their unscaled, graph-free gradients; ``estimates[i]`` is the compressed estimate of
        ``params[i]`` on a Hessian step of this group, else None; ``step`` is the 0-based count of applied steps.
        The subclass keeps its state in ``self.state[p]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ configuration
    def _normalized(self, group: dict[str, Any]) -> dict[str, Any]:
        # YAML gives lists where the optimizer keeps tuples (betas).
        return {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}

    def _validate(self, group: Mapping[str, Any]) -> None:
        owner = type(self).__name__
        self.validate_group(group)
        check_int(owner, "update_each", group["update_each"], 1)
        check_int(owner, "hessian_warmup_steps", group["hessian_warmup_steps"], 0)
        check_int(owner, "n_samples", group["n_samples"], 1)
        if group["foreach"] not in (None, True, False):
            raise ValueError(f"{owner}: invalid foreach={group['foreach']!r}; allowed: None, True or False")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        normalized = self._normalized({k: v for k, v in param_group.items() if k != "params"})
        param_group.update(normalized)
        self._validate({**self.defaults, **param_group})
        super().add_param_group(param_group)

    def is_hessian_step(self, group: Mapping[str, Any], step: int | None = None) -> bool:
        """Whether step ``step`` (default: the next one) draws a new estimate for ``group``."""
        t = self._t if step is None else step
        warmup = group["hessian_warmup_steps"]
        return t < warmup or (t - warmup) % group["update_each"] == 0

    def needs_hessian(self) -> bool:
        """Whether the next ``step()`` draws a new Hessian estimate (so ``backward`` needs ``create_graph``)."""
        return any(self.is_hessian_step(g) for g in self.param_groups if g["params"])

    @property
    def step_count(self) -> int:
        """Number of applied ``step()`` calls."""
        return self._t

    def use_foreach(self, group: Mapping[str, Any], params: list[Tensor]) -> bool:
        """The group's ``foreach`` option, resolved as torch.optim does (None: on when every param is on CUDA)."""
        foreach = group["foreach"]
        if foreach is None:
            foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)[1]
        return bool(foreach)

    # ------------------------------------------------------------------ random stream
    def generator(self, device: torch.device) -> torch.Generator:
        """This optimizer's generator for ``device`` (created on first use, from the seed and the device name)."""
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

    _generator = generator  # the name before the base existed (tests and scripts read the stream through it)

    def draw_probes(self, params: Sequence[Tensor]) -> list[Tensor]:
        """One probe z per parameter from this optimizer's distribution and generators."""
        return probe_like(params, self.generator, self.probe_distribution)

    def probe_estimate(self, z: Tensor, hz: Tensor) -> Tensor:
        """The single-probe estimate from ``z`` and ``H z``: ``|z * Hz|`` or ``z * Hz`` (a new tensor)."""
        d = z * hz
        return d.abs_() if self.absolute_estimate else d

    def undo_draw(self) -> None:
        """Put the z stream back to before the last :meth:`estimate_hessian` under a scaler (a skipped step
        draws nothing)."""
        for key, state in (self._rng_before_draw or {}).items():
            self._generators[key].set_state(state)

    def _rng_states(self, devices: set[torch.device]) -> dict[str, Tensor]:
        for d in devices:
            self.generator(d)
        return {k: g.get_state() for k, g in self._generators.items()}

    # ------------------------------------------------------------------ phase 1: the estimate
    def supply_estimate(self, estimates: Mapping[int, Tensor] | None, *, reduced: bool = False) -> None:
        """Hand in the next step's raw (full-size, unscaled) estimates by ``id(param)`` instead of drawing them
        from the gradients' graphs, e.g. when they were computed during backward (the fairseq plugin). Used once,
        by the next :meth:`estimate_hessian`; ``reduced=True``: already the same on every rank (not averaged)."""
        self._supplied = None if estimates is None else dict(estimates)
        self._supplied_reduced = reduced

    def estimate_hessian(self, hessian_grads: Sequence[Tensor | None] | None = None, *,
                         hessian_scale: Tensor | float | None = None, grad_scale: Tensor | float | None = None,
                         under_scaler: bool = False) -> dict[int, Tensor] | None:
        """Phase 1 of a step: the compressed, rank-averaged, unscaled estimates keyed by ``id(param)`` for the
        params of this step's Hessian groups ({} when none). Call it before any parameter moves: the
        double-backward graph may have saved them, and an in-place update would invalidate it.

        Under a GradScaler (``under_scaler``), None when an estimate is inf/NaN; :meth:`undo_draw` then puts the
        random stream back."""
        name = type(self).__name__
        self._rng_before_draw = None
        supplied, self._supplied = self._supplied, None
        reduced = supplied is not None and getattr(self, "_supplied_reduced", False)
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
            if not self.is_hessian_step(group, t):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{name} does not support sparse gradients")
                params.append(p)
                outputs.append(p.grad if hessian_grads is None else sub[id(p)])
                counts.append(group["n_samples"])
                groups.append(group)
        if not params:
            return {}
        if supplied is not None:
            missing = sum(id(p) not in supplied for p in params)
            if missing:
                raise RuntimeError(f"{name}: step {t} is a Hessian step but the supplied estimate lacks "
                                   f"{missing} of its {len(params)} parameters")
            ds = [supplied[id(p)] for p in params]
            scale = None
        else:
            scale = hessian_scale if hessian_scale is not None else grad_scale
            if scale is None and under_scaler:
                raise RuntimeError(
                    f"{name}: the GradScaler unscaled the gradients before step() (explicit scaler.unscale_), so "
                    "the loss scale that the Hessian estimate carries is unknown. Pass it: "
                    "scaler.step(opt, hessian_scale=scaler.get_scale()).")
            if under_scaler:
                self._rng_before_draw = self._rng_states({p.device for p in params})
            try:
                ds = diag_estimate(outputs, params, n_samples=counts, generator=self.generator,
                                   absolute=self.absolute_estimate, distribution=self.probe_distribution)
            except MissingGraphError as e:
                source = "hessian_grads" if hessian_grads is not None else "the parameters' .grad"
                raise MissingGraphError(f"{name} step {t} is a Hessian step but {source} carry no graph. {e}") \
                    from None
        if scale is not None:
            mul_(ds, inverse_scale(scale))
        cs = [self.compress_estimate(d, g) for d, g in zip(ds, groups)]
        del ds
        if not reduced and is_distributed(self._process_group):
            # Every rank must end with the same estimate: the mean of the local ones, in one collective.
            allreduce_mean_(cs, group=self._process_group)
        if under_scaler and not bool(torch.stack([c.isfinite().all() for c in cs]).all()):
            # After the all-reduce: a NaN on one rank reaches every rank, so all of them skip together.
            return None
        return {id(p): c for p, c in zip(params, cs)}

    # ------------------------------------------------------------------ phase 2: the update
    @torch.no_grad()
    def apply_update(self, estimates: Mapping[int, Tensor], grad_scale: Tensor | float | None = None) -> None:
        """Phase 2 of a step: release the graphs, unscale the gradients, :meth:`update_group` every group with
        gradients, count the step."""
        t = self._t
        inv = None if grad_scale is None else inverse_scale(grad_scale)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                _release_graph_(p)
            grads = [p.grad for p in params]
            if inv is not None:
                mul_(grads, inv)
            self.update_group(group, params, grads, [estimates.get(id(p)) for p in params], step=t)
        self._t += 1

    def step(self, closure: Callable[[], Any] | None = None, *, hessian_grads: Sequence[Tensor | None] | None = None,
             hessian_scale: Tensor | float | None = None) -> Any:
        """One update; see the class docstring for ``hessian_grads`` and ``hessian_scale``."""
        loss = None
        self.hessian_found_inf = False
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and bool(found_inf):
            # GradScaler found inf/NaN in the gradients: skip everything, as its default path does.
            self._supplied = None
            release_graphs_(self.param_groups)
            return loss
        estimates = self.estimate_hessian(hessian_grads, hessian_scale=hessian_scale, grad_scale=grad_scale,
                                          under_scaler=found_inf is not None)
        self.hessian_found_inf = estimates is None
        if estimates is None:
            # The Hessian-vector product of the scaled loss overflowed (fp16). GradScaler checked only .grad, so
            # it cannot know: skip the step as it would, and let the caller back the scale off (amp.update_scaler).
            self.undo_draw()
            release_graphs_(self.param_groups)
            return loss
        self.apply_update(estimates, grad_scale)
        return loss

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
        sd[self.extra_state_key] = self._extra_state()
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop(self.extra_state_key, None)
        super().load_state_dict(state_dict)
        # torch casts floating state to the param's dtype; put back the float32 state of half params.
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        current = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, current):
            saved = state_dict["state"].get(pid)
            if saved is None or p.dtype not in HALF:
                continue
            for key, value in saved.items():
                if isinstance(value, Tensor) and value.is_floating_point():
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32, copy=True)
        if extra is not None:
            self._load_extra_state(extra)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_second_order_extra"] = self._extra_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        extra = state.pop("_second_order_extra", state.pop("_adahessian_extra", None))
        super().__setstate__(state)
        self.__dict__.setdefault("_process_group", None)
        self.__dict__.setdefault("_supplied", None)
        self.__dict__.setdefault("_rng_before_draw", None)
        if extra is not None:
            self._load_extra_state(extra)
