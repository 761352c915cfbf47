"""Swapping modules of a model in place for subclasses that share their state (the fast double backwards)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def swap_modules(model: nn.Module, swaps: dict[type, type],
                 accept: Callable[[nn.Module], bool] = lambda m: True) -> nn.Module:
    """Replace every module whose exact type is a key of ``swaps`` (and that ``accept`` takes) by an instance of
    the mapped class holding the same ``__dict__``: the same parameter and buffer objects (an optimizer built
    before still updates them), hooks and training flag, so ``state_dict`` keys and values are unchanged. Returns
    ``model``, or a new module when ``model`` itself is swapped (there is no parent to swap it in)."""

    def takes(m: nn.Module | None) -> bool:
        return m is not None and type(m) in swaps and accept(m)

    def swapped(m: nn.Module) -> nn.Module:
        new = swaps[type(m)].__new__(swaps[type(m)])
        new.__dict__.update(m.__dict__)
        return new

    if takes(model):
        return swapped(model)
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if takes(child):
                parent._modules[name] = swapped(child)
    return model
