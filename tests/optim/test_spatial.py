"""Spatial averaging: every case of the spec against explicit loops."""

import pytest
import torch
from adahessian_testlib import reference_average

from optim import spatial


def _rand(*shape):
    return torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(sum(shape) + len(shape)))


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (4, 2, 5), (2, 3, 2, 3, 4), (6, 1, 1, 1)])
def test_kernels_average_over_dims_after_the_first_two(shape):
    d = _rand(*shape)
    out = spatial.spatial_average(d, block_size=7, average_conv_kernel=True)  # block_size plays no part
    assert out.shape == d.shape
    assert torch.allclose(out, reference_average(d, 1, True), rtol=1e-15, atol=0)
    c = spatial.compress(d, 7, True)
    assert c.shape == shape[:2] + (1,) * (len(shape) - 2)


def test_kernels_untouched_without_average_conv_kernel():
    d = _rand(4, 3, 3, 3)
    assert torch.equal(spatial.spatial_average(d, 4, average_conv_kernel=False), d)


@pytest.mark.parametrize("shape,block", [((3, 8), 4), ((3, 5), 4), ((2, 3), 4), ((5, 7), 3), ((4, 4), 1), ((1, 9), 32)])
def test_two_dim_blocks_in_row_major_order_with_partial_tail(shape, block):
    d = _rand(*shape)
    out = spatial.spatial_average(d, block_size=block)
    assert torch.allclose(out, reference_average(d, block, True), rtol=1e-15, atol=0)
    n = d.numel()
    assert spatial.compress(d, block).numel() == (n if block == 1 else -(-n // block))


def test_two_dim_blocks_follow_logical_not_memory_order():
    d = _rand(4, 6)
    t = d.t()  # non-contiguous: row-major order of t is not memory order
    assert torch.allclose(spatial.spatial_average(t, 4), reference_average(t.contiguous(), 4, True), rtol=1e-15)


def test_partial_block_values_by_hand():
    d = torch.arange(10.0, dtype=torch.float64).view(2, 5)  # blocks of 4: [0..3] [4..7] [8, 9]
    out = spatial.spatial_average(d, 4).reshape(-1).tolist()
    assert out == [1.5] * 4 + [5.5] * 4 + [8.5] * 2


@pytest.mark.parametrize("shape", [(7,), ()])
def test_zero_and_one_dim_not_averaged(shape):
    d = _rand(*shape) if shape else torch.tensor(0.3, dtype=torch.float64)
    assert torch.equal(spatial.spatial_average(d, 4, True), d)
