"""GradScaler's ``update`` that also sees an overflow of AdaHessian's Hessian-vector product.

Under fp16 with a ``torch.amp.GradScaler`` the HVP runs on the scaled loss, so it is S times the curvature and can
overflow where the gradients do not. GradScaler looks only at ``.grad`` (before ``step()``), so AdaHessian skips
such a step itself and sets ``hessian_found_inf``; this function then backs the scale off as GradScaler does for
inf gradients. Without it, the scale would stay where the HVP overflows and every Hessian step would be skipped.
"""

from __future__ import annotations

import torch

__all__ = ["update_scaler"]


def update_scaler(scaler: torch.amp.GradScaler, *optimizers: torch.optim.Optimizer) -> None:
    """``scaler.update()``, backing off by ``scaler.get_backoff_factor()`` when any of ``optimizers`` skipped its
    last step for an inf/NaN Hessian estimate::

        scaler.scale(loss).backward(create_graph=opt.needs_hessian())
        scaler.step(opt)
        optim.update_scaler(scaler, opt)
    """
    if scaler.is_enabled() and any(getattr(opt, "hessian_found_inf", False) for opt in optimizers):
        scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
    else:
        scaler.update()
