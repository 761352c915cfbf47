"""Checks shared by the tests of the model swaps (optim.fast_batchnorm, optim.fast_conv): on a CIFAR ResNet20,
the swapped model's forward and gradients equal torch's bit for bit, and its Hessian-vector products and AdaHessian
steps equal torch's to float64 round-off."""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from optim import AdaHessian
from tasks.vision.resnet_cifar import CifarResNet


def resnet_pair(dtype, swap):
    torch.manual_seed(3)
    ref = CifarResNet(depth=20).to(dtype)
    with torch.no_grad():  # non-trivial affine parameters, so that every term of the double backward matters
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return ref, swap(copy.deepcopy(ref))


def check_resnet20_bitwise_and_hessian_vector_products(swap):
    ref, fast = resnet_pair(torch.float32, swap)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    for create_graph in (False, True):
        losses, grads = [], []
        for m in (ref, fast):
            loss = F.cross_entropy(m(x), y)
            losses.append(loss)
            grads.append(torch.autograd.grad(loss, list(m.parameters()), create_graph=create_graph))
        assert torch.equal(*losses)
        assert all(torch.equal(a, b) for a, b in zip(*grads))

    ref, fast = resnet_pair(torch.float64, swap)
    x = x.double()
    z = [torch.randint(0, 2, p.shape, generator=torch.Generator().manual_seed(i)).double() * 2 - 1
         for i, p in enumerate(ref.parameters())]
    hz = []
    for m in (ref, fast):
        params = list(m.parameters())
        g = torch.autograd.grad(F.cross_entropy(m(x), y), params, create_graph=True)
        hz.append(torch.autograd.grad(g, params, z))
    for a, b in zip(*hz):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)


def check_adahessian_on_resnet20(swap):
    # Three AdaHessian steps (each with a Hessian-vector product) from the same start and the same draws.
    ref, fast = resnet_pair(torch.float64, swap)
    x, y = torch.randn(8, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (8,))
    opts = [AdaHessian(m.parameters(), lr=0.1, seed=0) for m in (ref, fast)]
    for _ in range(3):
        for m, opt in zip((ref, fast), opts):
            F.cross_entropy(m(x), y).backward(create_graph=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
    for a, b in zip(ref.state_dict().values(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)
