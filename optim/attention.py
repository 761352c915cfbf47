"""Attention that can be differentiated twice.

``F.scaled_dot_product_attention`` dispatches to fused kernels (flash / memory-efficient / cuDNN on CUDA, a flash
kernel on CPU) whose backward has no derivative of its own: a Hessian-vector product through them fails with
"derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented" (or the CUDA
equivalent). The math backend is built from ordinary differentiable ops, so its double backward works.

Only the *forward* of a Hessian step has to run under the context (the kernel is chosen when the forward runs;
the backward of the math path is made of plain ops). Plain-backward steps can keep the fused kernels::

    with hessian_safe_attention(enabled=opt.needs_hessian()):
        loss = model(x)
    loss.backward(create_graph=opt.needs_hessian())
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["hessian_safe_attention"]


@contextlib.contextmanager
def hessian_safe_attention(enabled: bool = True) -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` through the math backend inside the block (when ``enabled``)."""
    if not enabled:
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield
