"""Spatial averaging of a Hessian-diagonal estimate (AdaHessian, Yao et al. 2020, Sec. 3.2).

A single Hutchinson sample of the Hessian diagonal is noisy element by element. AdaHessian trades resolution for
variance by averaging it over groups of parameters that are expected to have similar curvature:

* tensors of 3 or more dims (conv kernels: Conv1d 3-D, Conv2d 4-D, Conv3d 5-D) are averaged over every dim after
  the first two (the kernel's spatial extent), when ``average_conv_kernel`` is true;
* 2-dim tensors are averaged over blocks of ``block_size`` consecutive elements in row-major order; a trailing
  partial block (numel not a multiple of ``block_size``) averages over its own elements;
* tensors of 0 or 1 dims are never averaged.

The average is split into :func:`compress` (the averaged values at their reduced size) and :func:`expand` (back to
the parameter's shape) so that the distributed path can all-reduce the small compressed tensors: a 3x3 conv
kernel's estimate is 9 times smaller there, a 2-D block estimate ``block_size`` times smaller.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["compress", "expand", "spatial_average"]


def _mode(ndim: int, block_size: int, average_conv_kernel: bool) -> str:
    if ndim >= 3:
        return "kernel" if average_conv_kernel else "none"
    if ndim == 2 and block_size > 1:
        return "block"
    return "none"


def compress(d: Tensor, block_size: int = 1, average_conv_kernel: bool = True) -> Tensor:
    """The averaged values of ``d`` at reduced size (``d`` itself when no averaging applies).

    kernel mode: shape ``(d.shape[0], d.shape[1], 1, ..., 1)``; block mode: shape ``(ceil(numel / block_size),)``.
    """
    mode = _mode(d.ndim, block_size, average_conv_kernel)
    if mode == "kernel":
        return d.mean(dim=tuple(range(2, d.ndim)), keepdim=True)
    if mode == "block":
        flat = d.reshape(-1)  # row-major order of the logical layout, whatever the strides
        n_full = flat.numel() // block_size
        head = flat[: n_full * block_size].view(n_full, block_size).mean(dim=1)
        if n_full * block_size == flat.numel():
            return head
        tail = flat[n_full * block_size :].mean().reshape(1)
        return torch.cat([head, tail])
    return d


def expand(c: Tensor, shape: torch.Size | tuple[int, ...], block_size: int = 1,
           average_conv_kernel: bool = True) -> Tensor:
    """Inverse layout of :func:`compress`: every element gets the mean of its group.

    kernel mode returns a stride-0 broadcast view (no copy); block mode materializes the tensor.
    """
    shape = torch.Size(shape)
    mode = _mode(len(shape), block_size, average_conv_kernel)
    if mode == "kernel":
        return c.expand(shape)
    if mode == "block":
        # The last (possibly partial) block is repeated block_size times and then cut to numel.
        return c.repeat_interleave(block_size)[: shape.numel()].view(shape)
    return c


def spatial_average(d: Tensor, block_size: int = 1, average_conv_kernel: bool = True) -> Tensor:
    """``d`` averaged as described in the module docstring, at ``d``'s shape."""
    return expand(compress(d, block_size, average_conv_kernel), d.shape, block_size, average_conv_kernel)
