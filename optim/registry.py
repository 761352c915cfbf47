"""Build the suite's optimizers from a config mapping (a Hydra ``_partial_`` target).

::

    optimizer:
      _target_: optim.build_optimizer
      _partial_: true
      name: adahessian
      lr: 0.15
      betas: [0.9, 0.999]
      weight_decay: 0.0033

    opt = instantiate(cfg.optimizer)(model.parameters())

``lr_scale`` multiplies ``lr`` (the LR sweep's factor; ``weight_decay`` stays as configured). Disjoint parameter
sets, each with its own optimizer (DLRM: embeddings on Adagrad, MLPs on AdaHessian)::

    opt = build_optimizer({"embeddings": emb_params, "dense": mlp_params}, name="adahessian", lr=0.043,
                          per_set={"embeddings": {"name": "adagrad", "lr": 0.01}})
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from .adahessian import AdaHessian
from .combined import CombinedOptimizer

__all__ = ["OPTIMIZERS", "build_optimizer", "needs_hessian", "UnknownOptionError"]

_CLASSES: dict[str, type[Optimizer]] = {
    "sgd": torch.optim.SGD,  # momentum, nesterov, coupled L2 (weight_decay added to the gradient)
    "adam": torch.optim.Adam,  # coupled L2
    "adamw": torch.optim.AdamW,  # decoupled weight decay
    "adagrad": torch.optim.Adagrad,
    "adahessian": AdaHessian,  # decoupled weight decay
}
OPTIMIZERS: tuple[str, ...] = tuple(_CLASSES)

# weight_decay defaults to 0 for every name, AdamW included (torch's AdamW default is 0.01): a config that does not
# mention weight decay gets none.
_DEFAULTS: dict[str, dict[str, Any]] = {name: {"weight_decay": 0.0} for name in OPTIMIZERS}


class UnknownOptionError(TypeError, ValueError):
    """An option the named optimizer does not take (a TypeError like any unexpected keyword, and a ValueError
    like every other config error here)."""


def needs_hessian(opt: Any) -> bool:
    """Whether ``opt``'s next ``step()`` needs graph-carrying gradients (False for first-order optimizers)."""
    fn = getattr(opt, "needs_hessian", None)
    return bool(fn()) if callable(fn) else False


def _plain(value: Any) -> Any:
    # OmegaConf's DictConfig/ListConfig are Mapping/Sequence: turn them (and YAML lists) into dicts and tuples.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(_plain(v) for v in value)
    return value


def _number(what: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            return float(value)  # "1e-3" is a string in YAML 1.1
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _options(cls: type[Optimizer]) -> list[str]:
    return [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "params", "lr")]


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or name.lower() not in _CLASSES:
        raise ValueError(f"unknown optimizer name {name!r}; allowed names: {', '.join(OPTIMIZERS)}")
    return name.lower()


def _build_one(params: Any, name: Any, lr: float, options: Mapping[str, Any]) -> Optimizer:
    name = _check_name(name)
    cls = _CLASSES[name]
    allowed = _options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UnknownOptionError(f"optimizer {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
                                 f"allowed: {', '.join(allowed)}")
    kwargs = {**_DEFAULTS[name], **{k: _plain(v) for k, v in options.items()}}
    return cls(params, lr=lr, **kwargs)


def _groups(params: Any) -> list[dict[str, Any]]:
    if isinstance(params, torch.Tensor):
        return [{"params": [params]}]
    items = list(params)
    if items and isinstance(items[0], Mapping):
        return [dict(g) for g in items]
    return [{"params": items}]


def build_optimizer(params: Iterable[Any] | Mapping[str, Iterable[Any]], *, name: str, lr: float,
                    lr_scale: float = 1.0, per_set: Mapping[str, Mapping[str, Any]] | None = None,
                    **kwargs: Any) -> Optimizer:
    """Build optimizer ``name`` (one of :data:`OPTIMIZERS`) over ``params`` with learning rate ``lr * lr_scale``.

    ``kwargs`` are the optimizer's own options (betas may be a list). ``params`` may be a dict ``{set_name:
    params}``; ``per_set={set_name: {"name": ..., "lr": ..., **options}}`` then gives those sets their own
    optimizer (``lr_scale`` multiplies their lr too) and the result is a :class:`CombinedOptimizer`; sets not
    named in ``per_set`` share the top-level optimizer, one param group per set.
    """
    scale = _number("lr_scale", lr_scale)
    base_lr = _number("lr", lr)
    per_set = _plain(per_set) if per_set else {}
    if not isinstance(params, Mapping):
        if per_set:
            raise ValueError("per_set needs params given as a dict {set_name: params}")
        return _build_one(params, name, base_lr * scale, kwargs)

    sets = {str(k): _groups(v) for k, v in params.items()}
    unknown = sorted(set(per_set) - set(sets))
    if unknown:
        raise ValueError(f"per_set names set(s) {unknown} that are not in params (sets: {sorted(sets)})")
    rest = [k for k in sets if k not in per_set]
    if not per_set:
        return _build_one([g for k in rest for g in sets[k]], name, base_lr * scale, kwargs)
    members: dict[str, Optimizer] = {}
    for set_name in sets:
        if set_name in per_set:
            spec = dict(per_set[set_name])
            if "name" not in spec or "lr" not in spec:
                raise ValueError(f"per_set[{set_name!r}] needs 'name' and 'lr', got {sorted(spec)}")
            sub_name, sub_lr = spec.pop("name"), _number(f"per_set[{set_name!r}].lr", spec.pop("lr"))
            sub_scale = _number(f"per_set[{set_name!r}].lr_scale", spec.pop("lr_scale", 1.0))
            members[set_name] = _build_one(sets[set_name], sub_name, sub_lr * scale * sub_scale, spec)
        elif set_name == rest[0]:
            # All sets without their own entry share one top-level optimizer, at the first such set's position.
            members["+".join(rest)] = _build_one([g for k in rest for g in sets[k]], name, base_lr * scale, kwargs)
    return CombinedOptimizer(members)
