"""Convolutions whose double backward calls torch's own convolution kernels (for Hessian-vector products).

A convolution y = conv(x, W) + b has the first backward (one ``convolution_backward`` call)

    gx = dgrad(gy, W),   gW = wgrad(x, gy),   gb = sum(gy),

bilinear in its inputs, so its derivative given upstream gradients (ggx, ggW, ggb) is

    d/d gy = conv(ggx, W) + conv(x, ggW) + ggb,   d/d W = wgrad(ggx, gy),   d/d x = dgrad(gy, ggW).

The last two are exactly one more ``convolution_backward`` call, fed (gy, ggx, ggW) where it is usually fed
(gy, x, W). Autograd's own double backward (``_convolution_double_backward``) computes d/d W instead as a
convolution of the batch-transposed tensors (ggx and gy with batch and channels swapped, gy as a kernel the size of
the activation), copying both to contiguous memory first: on a CPU ResNet20 that single term cost more than the
rest of the convolution's double backward. Here every term is a kernel torch tunes for its usual job.

Forward and first backward are torch's calls (``F.conv*d`` and ``aten.convolution_backward`` with the arguments
autograd passes), so the output and the gradients are bitwise torch's; only the derivative of the first backward
is replaced, and it equals autograd's to round-off (float64 tests). ``fast_conv(model)`` swaps every
``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d`` with zero padding given as numbers in place (same parameters, same
``state_dict`` keys); 'same' padding (possibly asymmetric) and other padding modes are left as they are. A third
derivative is refused (``once_differentiable``): AdaHessian and Sophia-H need two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .swap import swap_modules

__all__ = ["FastConv1d", "FastConv2d", "FastConv3d", "fast_conv"]

_CONV_BACKWARD = torch.ops.aten.convolution_backward
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _conv(x: Tensor, w: Tensor, geom: tuple) -> Tensor:
    stride, padding, dilation, groups = geom
    return _CONV[w.dim() - 2](x, w, None, stride, padding, dilation, groups)


def _conv_backward(gy: Tensor, x: Tensor, w: Tensor, geom: tuple, mask: list[bool], bias: bool = False):
    stride, padding, dilation, groups = geom
    zeros = [0] * (w.dim() - 2)
    return _CONV_BACKWARD(gy, x, w, [w.shape[0]] if bias else None, list(stride), list(padding), list(dilation),
                          False, zeros, groups, mask)


class _ConvFn(torch.autograd.Function):
    """y = conv(x, W) + b with torch's kernel; its backward is ``_ConvBackwardFn`` (differentiable once more)."""

    @staticmethod
    def forward(ctx, x, weight, bias, geom):
        stride, padding, dilation, groups = geom
        ctx.geom, ctx.has_bias = geom, bias is not None
        ctx.save_for_backward(x, weight)
        return _CONV[weight.dim() - 2](x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        gx, gw, gb = _ConvBackwardFn.apply(gy, x, weight, ctx.geom, ctx.has_bias, tuple(ctx.needs_input_grad[:3]))
        return gx, gw, gb, None


class _ConvBackwardFn(torch.autograd.Function):
    """(gx, gW, gb) = torch's convolution backward; its backward is the closed form of the module docstring."""

    @staticmethod
    def forward(ctx, gy, x, weight, geom, has_bias, needs):
        gx, gw, gb = _conv_backward(gy, x, weight, geom, [needs[0], needs[1], has_bias and needs[2]], has_bias)
        ctx.geom = geom
        ctx.save_for_backward(gy, x, weight)
        return gx, gw, gb

    @staticmethod
    @once_differentiable
    def backward(ctx, ggx, ggw, ggb):
        gy, x, weight = ctx.saved_tensors
        need_gy, need_x, need_w = ctx.needs_input_grad[:3]
        d_gy = d_x = d_w = None
        if need_gy:
            if ggx is not None:
                d_gy = _conv(ggx, weight, ctx.geom)
            if ggw is not None:
                term = _conv(x, ggw, ctx.geom)
                d_gy = term if d_gy is None else d_gy.add_(term)
            if ggb is not None:
                b = ggb.view((1, -1) + (1,) * (gy.dim() - 2))
                d_gy = b.expand_as(gy).clone() if d_gy is None else d_gy.add_(b)
        # d/d x = dgrad(gy, ggW) and d/d W = wgrad(ggx, gy): one call of torch's backward kernel, with ggx in the
        # place of the input (only its shape is read for dgrad) and ggW in the place of the weight.
        want_x, want_w = need_x and ggw is not None, need_w and ggx is not None
        if want_x or want_w:
            d_x, d_w, _ = _conv_backward(gy, ggx if ggx is not None else x, ggw if ggw is not None else weight,
                                         ctx.geom, [want_x, want_w, False])
        return d_gy, d_x, d_w, None, None, None


class _FastConv(nn.modules.conv._ConvNd):
    def forward(self, input: Tensor) -> Tensor:
        return _ConvFn.apply(input, self.weight, self.bias, (self.stride, self.padding, self.dilation, self.groups))


class FastConv1d(_FastConv, nn.Conv1d):
    """``nn.Conv1d`` whose double backward uses torch's convolution kernels."""


class FastConv2d(_FastConv, nn.Conv2d):
    """``nn.Conv2d`` whose double backward uses torch's convolution kernels."""


class FastConv3d(_FastConv, nn.Conv3d):
    """``nn.Conv3d`` whose double backward uses torch's convolution kernels."""


_SWAPS = {nn.Conv1d: FastConv1d, nn.Conv2d: FastConv2d, nn.Conv3d: FastConv3d}


def _swappable(m: nn.Module) -> bool:
    # Numeric zero padding only: 'same'/'valid' strings and reflect/replicate/circular padding keep torch's module.
    return m.padding_mode == "zeros" and not isinstance(m.padding, str)


def fast_conv(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d`` with numeric zero padding (exactly those types;
    subclasses are left alone) by its fast counterpart, in place, and return ``model``.

    The new modules hold the same parameter objects (an optimizer built before still updates them) and the same
    hooks, so ``state_dict`` keys and values are unchanged. A model that is itself such a convolution is returned
    as a new module (there is no parent to swap it in).
    """
    return swap_modules(model, _SWAPS, _swappable)
