"""Batch norm whose double backward is a closed form in a few fused passes (for Hessian-vector products).

Autograd's double backward of batch norm (``batchnorm_double_backward``) is composed of many separate
element-wise passes over the activation; in AdaHessian's Hessian-vector product on a CPU ResNet20 it was a quarter
of the step. Here the forward and the first backward are torch's own kernels (``native_batch_norm`` and
``native_batch_norm_backward``, the ones ``nn.BatchNorm2d`` runs), so the output, the running statistics and the
gradients are bitwise torch's; only the derivative of the first backward is replaced.

Per channel, with M the number of reduced elements, s = 1/sqrt(var + eps), xh = (x - mean) * s and
``mean(.)`` the mean over the M elements, the first backward (training statistics) is

    gb = sum(gy),  gw = sum(gy * xh),  gx = w * s * P(gy),  P(u) = u - mean(u) - xh * mean(u * xh).

Given upstream gradients (ggx, ggw, ggb) of (gx, gw, gb), its derivative (P is self-adjoint, and
d xh = s * P(dx), d s = -s^2 * mean(xh * dx)) is

    d/d gy = ggb + ggw * xh + w * s * P(ggx)
    d/d w  = s * sum(ggx * P(gy))
    d/d x  = s * (ggw - w * s * mean(ggx * xh)) * P(gy) - w * s^2 * mean(gy * xh) * P(ggx)
             - w * s^2 * mean(ggx * P(gy)) * xh,

which after expanding P is a per-channel linear combination of gy, s * P(ggx), x and a constant. Two calls
of torch's own batch-norm backward kernel give s * P(ggx) with sum(ggx) and sum(ggx * xh), and sum(ggx * gy) (the
kernel fed gy as its input, with mean 0 and invstd 1); the rest is five multiply-adds (``addcmul``) over the
activation: about 20 reads and writes of activation-sized tensors, where autograd's composition makes dozens.
With running statistics (eval) s and the mean are constants:
d/d gy = ggb + ggw * xh + w * s * ggx, d/d w = s * sum(ggx * gy), d/d x = ggw * s * gy.

``fast_batchnorm(model)`` swaps every ``nn.BatchNorm1d``/``nn.BatchNorm2d`` of a model for these modules in
place (same parameters and buffers, same ``state_dict`` keys). A third derivative is refused
(``once_differentiable``): AdaHessian and Sophia-H need two.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .swap import swap_modules

__all__ = ["FastBatchNorm1d", "FastBatchNorm2d", "fast_batchnorm"]

_NBB = torch.ops.aten.native_batch_norm_backward


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    # (C,) -> (1, C, 1, ...) broadcasting against an (N, C, *) activation.
    return t.view((1, -1) + (1,) * (ndim - 2))


class _BatchNormFn(torch.autograd.Function):
    """y = batch_norm(x; w, b) with torch's kernel; updates the running statistics in training mode."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        y, save_mean, save_invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, training,
                                                            momentum, eps)
        ctx.training, ctx.eps = training, eps
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        # Eval mode's backward reads the running statistics: saving them lets autograd refuse a backward after
        # they were changed in place (as torch's own batch norm does).
        ctx.save_for_backward(x, weight, running_mean, running_var, save_mean, save_invstd)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, running_mean, running_var, save_mean, save_invstd = ctx.saved_tensors
        gx, gw, gb = _BatchNormBackwardFn.apply(gy, x, weight, running_mean, running_var, save_mean, save_invstd,
                                                ctx.training, ctx.eps)
        return gx, gw if ctx.has_weight else None, gb if ctx.has_bias else None, None, None, None, None, None


class _BatchNormBackwardFn(torch.autograd.Function):
    """(gx, gw, gb) = torch's batch-norm backward; its own backward is the closed form of the module docstring."""

    @staticmethod
    def forward(ctx, gy, x, weight, running_mean, running_var, save_mean, save_invstd, training, eps):
        gx, gw, gb = _NBB(
            gy, x, weight, running_mean, running_var, save_mean, save_invstd, training, eps, [True, True, True])
        ctx.training, ctx.eps = training, eps
        ctx.save_for_backward(gy, x, weight, running_mean, running_var, save_mean, save_invstd, gw, gb)
        return gx, gw, gb

    @staticmethod
    @once_differentiable
    def backward(ctx, ggx, ggw, ggb):
        gy, x, weight, running_mean, running_var, mean, invstd, gw, gb = ctx.saved_tensors
        nd = x.dim()
        dims = [0] + list(range(2, nd))
        m = x.numel() // x.shape[1]
        ch = lambda t: _channel_view(t, nd)  # noqa: E731
        if not ctx.training:
            mean, invstd = running_mean, torch.rsqrt(running_var + ctx.eps)
        s = ch(invstd)
        w = ch(weight) if weight is not None else torch.ones_like(s)
        ggw = ch(ggw) if ggw is not None else None
        ggb = ch(ggb) if ggb is not None else None

        if not ctx.training:
            xh = torch.addcmul(ch(-mean * invstd), x, s)  # (x - mean) * s in one pass
            d_gy = xh * ggw if ggw is not None else torch.zeros_like(gy)
            if ggb is not None:
                d_gy += ggb
            d_w = d_x = None
            if ggx is not None:
                d_gy.addcmul_(ggx, w * s)
                if weight is not None:
                    d_w = (ggx * gy).sum(dims) * invstd
            if ggw is not None and ctx.needs_input_grad[1]:
                d_x = gy * (ggw * s)
            return d_gy, d_x, d_w, None, None, None, None, None, None

        mean_gy, mean_gyxh = ch(gb) / m, ch(gw) / m  # gb = sum(gy), gw = sum(gy * xh): torch's first backward
        zero = torch.zeros_like(s)
        ggw_ = ggw if ggw is not None else zero
        ggb_ = ggb if ggb is not None else zero
        mu = ch(mean)
        q = None
        if ggx is not None:
            # torch's batch-norm backward kernel, fed ggx, returns s * P(ggx), sum(ggx * xh) and sum(ggx) in one
            # call; fed ggx with "input" gy, mean 0 and invstd 1, its weight gradient is sum(ggx * gy).
            q, s_ggxxh, s_ggx = _NBB(ggx, x, None, None, None, mean, invstd, True, ctx.eps, [True, True, True])
            s_ggxgy = _NBB(ggx, gy, None, None, None, torch.zeros_like(mean), torch.ones_like(invstd), True,
                           ctx.eps, [False, True, False])[1]
            mean_ggx, mean_ggxxh = ch(s_ggx) / m, ch(s_ggxxh) / m
            # mean(ggx * P(gy)) without materializing P(gy).
            mean_ggxpgy = ch(s_ggxgy) / m - mean_gy * mean_ggx - mean_gyxh * mean_ggxxh
        else:
            mean_ggxxh = mean_ggxpgy = zero

        # d/d x = a * P(gy) + b * P(ggx) + c * xh with P(ggx) = q / s and xh = s * (x - mean):
        #       = a * gy + (b / s) * q + k * x + f.
        a = s * (ggw_ - w * s * mean_ggxxh)
        b_over_s = -w * s * mean_gyxh
        c = -w * s * s * mean_ggxpgy
        k = (c - a * mean_gyxh) * s
        f = -a * mean_gy - k * mu
        d_x = torch.addcmul(f, x, k).addcmul_(gy, a)
        # d/d gy = ggb + ggw * xh + w * s * P(ggx) = ggw * s * x + (ggb - ggw * s * mean) + w * q.
        d_gy = torch.addcmul(ggb_ - ggw_ * s * mu, x, ggw_ * s)
        d_w = None
        if q is not None:
            d_x.addcmul_(q, b_over_s)
            d_gy.addcmul_(q, w)
            if weight is not None:
                d_w = (mean_ggxpgy * (m * s)).flatten()
        return d_gy, d_x, d_w, None, None, None, None, None, None


class _FastBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``forward`` is torch's ``_BatchNorm.forward`` (same mode and momentum logic) on the fused function."""

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        return _BatchNormFn.apply(input, self.weight, self.bias,
                                  self.running_mean if use_running else None,
                                  self.running_var if use_running else None, bn_training, factor, self.eps)


class FastBatchNorm1d(_FastBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with a fused closed-form double backward."""


class FastBatchNorm2d(_FastBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with a fused closed-form double backward."""


_SWAPS = {nn.BatchNorm1d: FastBatchNorm1d, nn.BatchNorm2d: FastBatchNorm2d}


def fast_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d``/``nn.BatchNorm2d`` (exactly those types; subclasses such as SyncBatchNorm
    are left alone) by its fused counterpart, in place, and return ``model``.

    The new modules hold the same parameter and buffer objects (an optimizer built before still updates them) and
    the same hooks, so ``state_dict`` keys and values are unchanged. A model that is itself a batch norm is
    returned as a new module (there is no parent to swap it in).
    """
    return swap_modules(model, _SWAPS)
