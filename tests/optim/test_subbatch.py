"""The sub-batch Hessian path: step(hessian_grads=...) with graph-carrying gradients of part of the batch."""

import pytest
import torch
from adahessian_testlib import SHAPES, GroupCfg, Separable, initial_params, max_rel_err, reference_run

from optim import AdaHessian, MissingGraphError


def _sub(problem: Separable, n: int) -> Separable:
    return Separable([a[:n] for a in problem.a], [b[:n] for b in problem.b], [c[:n] for c in problem.c])


@pytest.mark.parametrize("update_each", [1, 2])
def test_estimate_from_sub_batch_update_from_full_batch(update_each):
    full = Separable.make(samples=8, seed=2)
    quarter = _sub(full, 2)
    p0 = initial_params(seed=3)
    cfg = GroupCfg(lr=0.05, block_size=4, update_each=update_each, indices=list(range(len(SHAPES))))
    expected = reference_run(full, p0, [cfg], steps=7, hessian_problem=quarter)
    params = [torch.nn.Parameter(p.clone()) for p in p0]
    opt = AdaHessian(params, lr=0.05, block_size=4, update_each=update_each, seed=0)
    for _ in range(7):
        hg = None
        if opt.needs_hessian():
            hg = torch.autograd.grad(quarter.loss(params), params, create_graph=True)
        full.loss(params).backward()  # plain backward on the full batch
        opt.step(hessian_grads=hg)
        opt.zero_grad()
    assert max_rel_err(params, expected) < 1e-12
    # ... and it is not the full-batch-Hessian trajectory.
    assert max_rel_err(params, reference_run(full, p0, [cfg], steps=7)) > 1e-6


def test_full_batch_hessian_grads_equal_default_path():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    runs = []
    for use_hg in (False, True):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
        params = list(model.parameters())
        opt = AdaHessian(params, lr=0.05, block_size=4, seed=5)
        for _ in range(4):
            loss = (model(x) - y).pow(2).mean()
            if use_hg:
                hg = torch.autograd.grad(loss, params, create_graph=True)
                (model(x) - y).pow(2).mean().backward()
                opt.step(hessian_grads=hg)
            else:
                loss.backward(create_graph=True)
                opt.step()
            opt.zero_grad()
        runs.append([p.detach().clone() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_hessian_grads_checks():
    a = torch.nn.Parameter(torch.ones(2))
    b = torch.nn.Parameter(torch.ones(3))
    opt = AdaHessian([a, b], update_each=2)
    (a.sum() ** 2 + b.sum() ** 2).backward()
    with pytest.raises(ValueError, match="expected one per parameter"):
        opt.step(hessian_grads=[None])
    plain = torch.autograd.grad(a.sum() ** 2 + b.sum() ** 2, [a, b])
    with pytest.raises(MissingGraphError, match="hessian_grads carry no graph"):
        opt.step(hessian_grads=plain)
    # None entries are allowed: that parameter's gradient graph is absent (its curvature comes from the others).
    hg = torch.autograd.grad(a.sum() ** 2 + b.sum() ** 2, [a, b], create_graph=True)
    opt.step(hessian_grads=[hg[0], None])
    assert opt.state[b]["hessian_step"] == 1 and (opt.state[b]["exp_hessian_diag_sq"] == 0).all()
    opt.zero_grad()
    (a.sum() ** 2 + b.sum() ** 2).backward()
    opt.step(hessian_grads=plain)  # off-step: ignored, no graph needed
    assert opt.step_count == 2
