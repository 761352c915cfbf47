"""Several optimizers over disjoint parameter sets, stepped as one ``torch.optim.Optimizer``.

The DLRM recipe of the paper keeps the embedding tables on Adagrad and puts the MLPs on AdaHessian. The trainer
(and ``torch.amp.GradScaler`` and the LR schedulers, which insist on an ``Optimizer`` instance) should still see
one optimizer: ``param_groups`` is the concatenation of the members' groups (the same dict objects, so a
scheduler's changes reach the members), ``step``/``zero_grad``/``state_dict`` fan out to the members.

Members are second-order optimizers (:class:`optim.second_order.SecondOrderOptimizer`: AdaHessian, Sophia-H, yours)
or first-order torch optimizers. On a step, every second-order member takes its Hessian estimate (phase 1 of its
public two-phase step) *before* any member moves its parameters: an in-place update of a parameter that the
double-backward graph saved would make the Hessian-vector product fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .second_order import SecondOrderOptimizer, inverse_scale, mul_, release_graphs_

__all__ = ["CombinedOptimizer"]


class CombinedOptimizer(Optimizer):
    """Step ``optimizers`` (a mapping set name -> optimizer over disjoint parameters) as one optimizer.

    ``step(closure=None, hessian_grads=None, *, hessian_scale=None)``: ``hessian_grads`` is aligned with
    ``[p for g in combined.param_groups for p in g["params"]]``; the entries of first-order members are ignored.
    Under a ``GradScaler`` the combined optimizer unscales the first-order members' gradients itself and skips
    every member when the scaler found inf/NaN.
    """

    _step_supports_amp_scaling = True

    def __init__(self, optimizers: Mapping[str, Optimizer]) -> None:
        if not optimizers:
            raise ValueError("CombinedOptimizer needs at least one optimizer")
        self.optimizers: dict[str, Optimizer] = dict(optimizers)
        seen: dict[int, str] = {}
        for name, opt in self.optimizers.items():
            if not isinstance(opt, Optimizer) or isinstance(opt, CombinedOptimizer):
                raise TypeError(f"member {name!r} must be a (non-combined) torch.optim.Optimizer, got {type(opt)}")
            for g in opt.param_groups:
                for p in g["params"]:
                    if id(p) in seen:
                        raise ValueError(f"a parameter is in both {seen[id(p)]!r} and {name!r}; "
                                         "the parameter sets must be disjoint")
                    seen[id(p)] = name
        self.hessian_found_inf = False  # as SecondOrderOptimizer's: the last step was skipped for an inf/NaN estimate
        self._initializing = True
        # torch.optim.Optimizer.__init__ sets up the hook dicts and the step profiling; the one empty group it adds
        # is dropped by add_param_group below, and param_groups/state come from the members.
        super().__init__([{"params": []}], {})
        self._initializing = False

    # param_groups and state are views of the members'; Optimizer.__init__ assigns both, hence the no-op setters.
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    @param_groups.setter
    def param_groups(self, value: Any) -> None:
        pass

    @property
    def state(self) -> dict[Tensor, Any]:  # type: ignore[override]
        return {p: s for opt in self.optimizers.values() for p, s in opt.state.items()}

    @state.setter
    def state(self, value: Any) -> None:
        pass

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_initializing", False):
            return
        raise TypeError("CombinedOptimizer: add the param group to one of its members (combined.optimizers[name])")

    def needs_hessian(self) -> bool:
        """Whether the next ``step()`` of any member draws a new Hessian estimate."""
        from .registry import needs_hessian

        return any(needs_hessian(opt) for opt in self.optimizers.values())

    def step(self, closure: Callable[[], Any] | None = None, hessian_grads: Sequence[Tensor | None] | None = None,
             *, hessian_scale: Tensor | float | None = None) -> Any:
        loss = None
        self.hessian_found_inf = False
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        members = list(self.optimizers.values())
        if found_inf is not None and bool(found_inf):
            release_graphs_(self.param_groups)
            return loss
        split: list[Sequence[Tensor | None] | None] = [None] * len(members)
        if hessian_grads is not None:
            hessian_grads = list(hessian_grads)
            sizes = [sum(len(g["params"]) for g in opt.param_groups) for opt in members]
            if len(hessian_grads) != sum(sizes):
                raise ValueError(f"hessian_grads has {len(hessian_grads)} entries; expected one per parameter "
                                 f"({sum(sizes)}), aligned with combined.param_groups")
            start = 0
            for i, n in enumerate(sizes):
                split[i] = hessian_grads[start:start + n]
                start += n
        # Phase 1: every Hessian estimate, while all parameters are still those the graphs saw.
        second = [isinstance(opt, SecondOrderOptimizer) for opt in members]
        estimates = [opt.estimate_hessian(split[i], hessian_scale=hessian_scale, grad_scale=grad_scale,
                                          under_scaler=found_inf is not None) if second[i] else None
                     for i, opt in enumerate(members)]
        self.hessian_found_inf = any(est is None and so for so, est in zip(second, estimates))
        if self.hessian_found_inf:
            # A member's Hessian estimate overflowed under the GradScaler: skip every member, as for inf grads.
            for opt, so in zip(members, second):
                if so:
                    opt.undo_draw()
            release_graphs_(self.param_groups)
            return loss
        # Phase 2: the updates.
        inv = None if grad_scale is None else inverse_scale(grad_scale)
        for opt, est, so in zip(members, estimates, second):
            if so:
                opt.apply_update(est, grad_scale)  # type: ignore[arg-type]
                continue
            with torch.no_grad():
                release_graphs_(opt.param_groups)
                if inv is not None:
                    mul_([p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None], inv)
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()}}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        saved = state_dict["optimizers"]
        if set(saved) != set(self.optimizers):
            raise ValueError(f"state_dict holds sets {sorted(saved)}, this optimizer has {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(saved[name])

    def __getstate__(self) -> dict[str, Any]:
        return {"optimizers": self.optimizers, "defaults": {}, "_initializing": False}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)

    def __repr__(self) -> str:
        inner = "\n".join(f"  {name}: {opt!r}".replace("\n", "\n  ") for name, opt in self.optimizers.items())
        return f"{type(self).__name__}(\n{inner}\n)"
