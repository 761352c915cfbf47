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

``name`` is a registered name (:data:`OPTIMIZERS`, the one list of the suite's optimizers: configs, test
matrices, the fairseq table and the reports derive from it) or an import path ``package.module:ClassName`` of any
``torch.optim.Optimizer`` subclass, which then runs on every torch-native task without touching the suite (a
:class:`optim.second_order.SecondOrderOptimizer` subclass gets Hessian steps).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer

from .adahessian import AdaHessian
from .combined import CombinedOptimizer
from .second_order import SecondOrderOptimizer
from .sophia import SophiaH

__all__ = ["OPTIMIZERS", "REGISTRY", "build_optimizer", "optimizer_factory", "needs_hessian", "resolve",
           "is_second_order", "UnknownOptionError"]

# The one list of the suite's optimizers (name -> class). Everything else derives from it.
REGISTRY: dict[str, type[Optimizer]] = {
    "sgd": torch.optim.SGD,  # momentum, nesterov, coupled L2 (weight_decay added to the gradient)
    "adam": torch.optim.Adam,  # coupled L2
    "adamw": torch.optim.AdamW,  # decoupled weight decay
    "adagrad": torch.optim.Adagrad,
    "adahessian": AdaHessian,  # decoupled weight decay
    "sophiah": SophiaH,  # decoupled weight decay
}
OPTIMIZERS: tuple[str, ...] = tuple(REGISTRY)
_CLASSES = REGISTRY  # the name before the registry was public

# weight_decay defaults to 0 for every optimizer that takes it, AdamW included (torch's AdamW default is 0.01): a
# config that does not mention weight decay gets none.
_DEFAULTS: dict[str, Any] = {"weight_decay": 0.0}
# Config keys that are the registry's, not the optimizer's.
CONFIG_KEYS = ("name", "lr", "lr_scale", "per_set", "_target_", "_partial_")


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


def is_second_order(opt_or_cls: Any) -> bool:
    """Whether an optimizer (or class) takes Hessian steps (a :class:`SecondOrderOptimizer`)."""
    cls = opt_or_cls if isinstance(opt_or_cls, type) else type(opt_or_cls)
    return issubclass(cls, SecondOrderOptimizer)


def _number(what: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)  # "1e-3" is a string in YAML 1.1
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what}={value!r} is not allowed; it must be a finite number")
    return float(value)


def _options(cls: type[Optimizer]) -> list[str]:
    return [n for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in ("self", "params", "lr") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def resolve(name: Any) -> tuple[str, type[Optimizer]]:
    """(canonical name, class) for a registered name or an import path ``package.module:ClassName``."""
    if isinstance(name, str) and ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"optimizer {name!r} does not import ({type(e).__name__}: {e}); an import path is "
                             "package.module:ClassName of a torch.optim.Optimizer subclass") from None
        if not (isinstance(obj, type) and issubclass(obj, Optimizer)):
            raise ValueError(f"optimizer {name!r} is {obj!r}, not a torch.optim.Optimizer subclass")
        return name, obj
    if not isinstance(name, str) or name.lower() not in REGISTRY:
        raise ValueError(f"unknown optimizer name {name!r}; allowed names: {', '.join(OPTIMIZERS)}, or an import "
                         "path package.module:ClassName")
    return name.lower(), REGISTRY[name.lower()]


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    # Shapes torch does not check itself (AdamW with betas=(0.9,) fails deep in step() with an IndexError).
    betas = options.get("betas")
    if betas is not None:
        ok = (isinstance(betas, Sequence) and not isinstance(betas, str) and len(betas) == 2
              and all(isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in betas))
        if not ok:
            raise ValueError(f"optimizer {name!r}: betas={list(betas) if isinstance(betas, tuple) else betas!r} "
                             "is not allowed; it must be two numbers, each in [0, 1)")


def _build_one(params: Any, name: Any, lr: float, options: Mapping[str, Any]) -> Optimizer:
    name, cls = resolve(name)
    allowed = _options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UnknownOptionError(f"optimizer {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
                                 f"allowed: {', '.join(allowed)}")
    kwargs = {**{k: v for k, v in _DEFAULTS.items() if k in allowed}, **{k: _plain(v) for k, v in options.items()}}
    _check_options(name, kwargs)
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
    """Build optimizer ``name`` (one of :data:`OPTIMIZERS`, or an import path ``package.module:ClassName``) over
    ``params`` with learning rate ``lr * lr_scale``.

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


def _find_target(node: Any, path: str) -> str | None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "_target_" and path:
                return f"{path}._target_"
            found = _find_target(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
        for i, v in enumerate(node):
            found = _find_target(v, f"{path}[{i}]")
            if found:
                return found
    return None


def optimizer_factory(config: Mapping[str, Any]) -> partial:
    """``params -> optimizer`` from an optimizer config node (conf/optim/*.yaml), built through the registry.

    The node's ``_target_`` must be ``optim.build_optimizer`` (or absent), and no value below it may carry a
    ``_target_``: nothing a config names is ever imported or called except the optimizer class itself (a
    registered name or an import path). Raises ValueError with one line for a bad config."""
    cfg = dict(_plain(config))
    target = cfg.get("_target_", "optim.build_optimizer")
    if target != "optim.build_optimizer":
        raise ValueError(f"optim._target_={target!r} is not allowed; it must be optim.build_optimizer (choose the "
                         "optimizer with optim.name)")
    nested = _find_target({k: v for k, v in cfg.items() if k != "_target_"}, "optim")
    if nested:
        raise ValueError(f"{nested} is not allowed: optimizer options are plain values")
    kwargs = {k: v for k, v in cfg.items() if k not in ("_target_", "_partial_")}
    if "name" not in kwargs or "lr" not in kwargs:
        raise ValueError(f"the optimizer config needs name and lr, got {sorted(kwargs)}")
    resolve(kwargs["name"])
    _number("optim.lr", kwargs["lr"])
    _number("optim.lr_scale", kwargs.get("lr_scale", 1.0))
    return partial(build_optimizer, **kwargs)
