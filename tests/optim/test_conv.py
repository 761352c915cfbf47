"""optim.conv: convolutions whose double backward calls torch's kernels, against torch's own convolutions.

Forward and first backward run the very calls autograd makes, so they are compared bitwise; the double backward
is computed differently (convolution_backward where autograd convolves batch-transposed tensors), so it is compared
in float64 to round-off, and by gradcheck/gradgradcheck against finite differences.
"""

import copy

import pytest
import torch
from swap_checks import check_adahessian_on_resnet20, check_resnet20_bitwise_and_hessian_vector_products
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

from optim import fast_batchnorm
from optim.conv import FastConv1d, FastConv2d, FastConv3d, fast_conv
from tasks.vision.resnet_cifar import CifarResNet

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 4)}
# Geometries: plain, strided without bias, dilated and grouped, and a 1x1 projection (the ResNets' shortcut).
GEOMETRIES = [dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2, padding=1, bias=False),
              dict(kernel_size=3, padding=2, dilation=2, groups=2), dict(kernel_size=1, stride=2, bias=False)]


def _pair(dim, geometry, dtype=torch.float64, cin=4, cout=6):
    torch.manual_seed(0)
    ref = CONVS[dim](cin, cout, **geometry).to(dtype)
    return ref, fast_conv(copy.deepcopy(ref))


def _inputs(dim, dtype=torch.float64, cin=4, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, cin) + SPATIAL[dim], dtype=dtype, generator=g)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["plain", "stride", "dilation-groups", "1x1"])
def test_gradcheck_and_gradgradcheck_float64(dim, geometry):
    _, conv = _pair(dim, geometry, cin=2, cout=2)
    x = _inputs(dim, cin=2, batch=1).requires_grad_()
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    assert gradcheck(lambda x, *p: conv(x), (x, *params))
    assert gradgradcheck(lambda x, *p: conv(x), (x, *params))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["plain", "stride", "dilation-groups", "1x1"])
def test_double_backward_equals_torchs_in_float64(dim, geometry):
    # Every derivative of <gx, vx> + <gW, vW> + <gb, vb> (with respect to x, weight, bias and the output gradient)
    # against autograd's _convolution_double_backward.
    ref, fast = _pair(dim, geometry)
    x = _inputs(dim)
    gy = torch.randn_like(ref(x))
    g = torch.Generator().manual_seed(2)
    params = lambda m: [p for p in (m.weight, m.bias) if p is not None]  # noqa: E731
    v = [torch.randn(t.shape, dtype=t.dtype, generator=g) for t in [x, *params(ref)]]

    def second(m):
        xx, gg = x.clone().requires_grad_(), gy.clone().requires_grad_()
        first = torch.autograd.grad(m(xx), [xx, *params(m)], gg, create_graph=True)
        return torch.autograd.grad(first, [xx, *params(m), gg], v, allow_unused=True, materialize_grads=True)

    for a, b in zip(second(ref), second(fast), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_only_some_upstream_gradients_and_an_input_without_grad():
    # The first layer of a network: the image needs no gradient; a product through the weight alone (no vx), and
    # one through the bias alone, equal torch's.
    ref, fast = _pair(2, GEOMETRIES[0])
    x = _inputs(2)
    for upstream in ("weight", "bias"):
        out = []
        for m in (ref, fast):
            gw, gb = torch.autograd.grad(m(x).sin().sum(), [m.weight, m.bias], create_graph=True)
            target = gw if upstream == "weight" else gb
            out.append(torch.autograd.grad(target, [m.weight, m.bias], torch.ones_like(target), allow_unused=True,
                                           materialize_grads=True))
        for a, b in zip(*out):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_forward_and_first_backward_are_bitwise_torchs(dim):
    ref, fast = _pair(dim, dict(kernel_size=3, stride=2, padding=1), dtype=torch.float32, cin=8, cout=8)
    x = _inputs(dim, dtype=torch.float32, cin=8, batch=4)
    for create_graph in (False, True):
        outs = []
        for m in (ref, fast):
            xx = x.clone().requires_grad_()
            y = m(xx)
            outs.append((y, *torch.autograd.grad(y.square().sum(), [xx, m.weight, m.bias],
                                                  create_graph=create_graph)))
        assert all(torch.equal(a, b) for a, b in zip(*outs))


def test_swap_keeps_parameters_and_state_dict_keys_and_leaves_what_it_cannot_take():
    model = CifarResNet(depth=20)
    params, keys = list(model.parameters()), list(model.state_dict())
    assert fast_conv(model) is model
    kinds = {type(m) for m in model.modules()}
    assert FastConv2d in kinds and nn.Conv2d not in kinds
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))  # an optimizer built before still applies
    assert isinstance(fast_conv(nn.Conv1d(2, 2, 3)), FastConv1d)
    assert isinstance(fast_conv(nn.Conv3d(2, 2, 3)), FastConv3d)
    kept = nn.Sequential(nn.Conv2d(2, 2, 4, padding="same"), nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
                         nn.ConvTranspose2d(2, 2, 3), type("MyConv", (nn.Conv2d,), {})(2, 2, 3))
    assert [type(m) for m in fast_conv(kept)] == [type(m) for m in kept]  # unchanged: the swap would not be exact
    assert [type(m).__name__ for m in kept] == ["Conv2d", "Conv2d", "ConvTranspose2d", "MyConv"]


def _both(model):
    # Both swaps, as the vision task makes them on a CPU Hessian run.
    return fast_conv(fast_batchnorm(model))


def test_resnet20_forward_and_gradients_bitwise_and_hessian_vector_products_to_round_off():
    check_resnet20_bitwise_and_hessian_vector_products(_both)


def test_adahessian_on_resnet20_agrees_in_float64():
    check_adahessian_on_resnet20(_both)


def test_third_derivative_is_refused():
    _, conv = _pair(2, GEOMETRIES[0])
    x = _inputs(2).requires_grad_()
    (gx,) = torch.autograd.grad(conv(x).pow(3).sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), conv.weight, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gw.sum().backward()
