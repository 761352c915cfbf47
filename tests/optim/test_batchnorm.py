"""optim.batchnorm: the fused batch-norm double backward against torch's batch norm.

Forward, running statistics and first backward run torch's own kernels, so they are compared bitwise; the double
backward is a different (closed-form) computation, so it is compared in float64 to round-off, and by
gradcheck/gradgradcheck against finite differences.
"""

import copy

import pytest
import torch
from swap_checks import check_adahessian_on_resnet20, check_resnet20_bitwise_and_hessian_vector_products
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

from optim.batchnorm import FastBatchNorm1d, FastBatchNorm2d, fast_batchnorm
from tasks.vision.resnet_cifar import CifarResNet

# (module class, input shape): BatchNorm1d on (N, C) and (N, C, L), BatchNorm2d on (N, C, H, W).
SHAPES = [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)), (nn.BatchNorm2d, (3, 3, 4, 5))]


def _pair(cls, affine=True, track=True, momentum=0.1, dtype=torch.float64):
    ref = cls(3, affine=affine, track_running_stats=track, momentum=momentum).to(dtype)
    with torch.no_grad():
        if affine:
            ref.weight.normal_()
            ref.bias.normal_()
        if track:
            ref.running_mean.normal_()
            ref.running_var.uniform_(0.5, 2.0)
    return ref, fast_batchnorm(copy.deepcopy(ref))


@pytest.mark.parametrize("cls,shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_and_gradgradcheck_float64(cls, shape, training, affine):
    torch.manual_seed(0)
    _, bn = _pair(cls, affine=affine)
    bn.train(training)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    inputs = (x, bn.weight, bn.bias) if affine else (x,)
    # The module updates its running statistics on every training call; the output does not depend on them then.
    assert gradcheck(lambda *a: bn(a[0]), inputs)
    assert gradgradcheck(lambda *a: bn(a[0]), inputs)


@pytest.mark.parametrize("cls,shape", SHAPES)
@pytest.mark.parametrize("training,track", [(True, True), (False, True), (True, False), (False, False)])
def test_double_backward_equals_torchs_in_float64(cls, shape, training, track):
    # Every derivative of <gx, vx> + <gw, vw> + <gb, vb> (with respect to x, weight, bias and the output gradient)
    # against torch's composed double backward.
    torch.manual_seed(1)
    ref, fast = _pair(cls, track=track)
    ref.train(training)
    fast.train(training)
    x = torch.randn(shape, dtype=torch.float64)
    gy = torch.randn(shape, dtype=torch.float64)
    v = [torch.randn(shape, dtype=torch.float64), torch.randn(3, dtype=torch.float64),
         torch.randn(3, dtype=torch.float64)]

    def second(m):
        xx, g = x.clone().requires_grad_(), gy.clone().requires_grad_()
        first = torch.autograd.grad(m(xx), [xx, m.weight, m.bias], g, create_graph=True)
        # Nothing depends on the bias twice: its entry is zero (materialized) in both.
        return torch.autograd.grad(first, [xx, m.weight, m.bias, g], v, allow_unused=True, materialize_grads=True)

    for a, b in zip(second(ref), second(fast)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_forward_running_stats_and_first_backward_are_bitwise_torchs(momentum):
    # float32, several training steps then eval: outputs, gradients and buffers equal bit for bit (torch's kernels
    # run in both), with momentum and with the cumulative average (momentum=None, num_batches_tracked).
    torch.manual_seed(2)
    ref, fast = _pair(nn.BatchNorm2d, momentum=momentum, dtype=torch.float32)
    for step in range(4):
        training = step < 3
        ref.train(training)
        fast.train(training)
        x = torch.randn(8, 3, 6, 6) * 3 + 1
        for create_graph in (False, True):
            outs = []
            for m in (ref, fast):
                xx = x.clone().requires_grad_()
                y = m(xx)
                outs.append((y, *torch.autograd.grad(y.square().sum(), [xx, m.weight, m.bias],
                                                      create_graph=create_graph)))
            assert all(torch.equal(a, b) for a, b in zip(*outs))
        assert all(torch.equal(a, b) for a, b in zip(ref.buffers(), fast.buffers()))
    assert int(fast.num_batches_tracked) == 6


def test_swap_keeps_parameters_buffers_and_state_dict_keys():
    model = CifarResNet(depth=20)
    params, buffers = list(model.parameters()), list(model.buffers())
    keys = list(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert fast_batchnorm(model) is model
    kinds = {type(m) for m in model.modules()}
    assert FastBatchNorm2d in kinds and nn.BatchNorm2d not in kinds
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))  # the optimizer built before still applies
    assert all(a is b for a, b in zip(model.buffers(), buffers))
    assert opt.param_groups[0]["params"][0] is params[0]
    assert isinstance(fast_batchnorm(nn.BatchNorm1d(4)), FastBatchNorm1d)
    sync = nn.Sequential(nn.SyncBatchNorm(4))
    assert type(fast_batchnorm(sync)[0]) is nn.SyncBatchNorm  # subclasses of torch's batch norms are left alone


def test_resnet20_forward_and_gradients_bitwise_and_hessian_vector_products_to_round_off():
    check_resnet20_bitwise_and_hessian_vector_products(fast_batchnorm)


def test_adahessian_on_resnet20_agrees_in_float64():
    check_adahessian_on_resnet20(fast_batchnorm)


def test_third_derivative_is_refused():
    _, bn = _pair(nn.BatchNorm2d)
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(bn(x).pow(3).sum(), x, create_graph=True)
    (ggx,) = torch.autograd.grad(gx.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        ggx.sum().backward()
