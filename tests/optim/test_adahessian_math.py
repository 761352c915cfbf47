"""AdaHessian's update against hand-computed values and an independent float64 reference of the spec's formulas."""

from __future__ import annotations

import itertools

import pytest
import torch
from adahessian_testlib import (
    SHAPES,
    GroupCfg,
    Separable,
    initial_params,
    max_rel_err,
    reference_run,
    run_optimizer,
    separable_case,
)

from optim import AdaHessian


def _leaves(tensors):
    return [torch.nn.Parameter(t.clone()) for t in tensors]


def test_hand_computed_two_steps():
    # f(w) = 2 w0^2 + 0.5 w1^2, w = (1, -2): g = (4 w0, w1), H = diag(4, 1), so D = (4, 1) for any z.
    # lr 0.1, betas (0.9, 0.999), eps 1e-4, k 1, update_each 2 (step 2 reuses v, tau stays 1).
    # Step 1: m = 0.1 g = (0.4, -0.2), m_hat = m / 0.1 = (4, -2); v = 0.001 (16, 1), v_hat = (16, 1);
    #         denom = (4.0001, 1.0001); w = (1 - 0.1 * 4 / 4.0001, -2 + 0.1 * 2 / 1.0001)
    #           = (0.9000024999375, -1.8000199980002)
    # Step 2: g = (3.6000099997500, -1.8000199980002); m = 0.9 m + 0.1 g = (0.7200009999750, -0.3600019998000);
    #         m_hat = m / (1 - 0.81) = (3.7894789472368, -1.8947473673685); denom unchanged (tau = 1);
    #         w = (0.9000024999375 - 0.1 * 3.7894789472368 / 4.0001, -1.8000199980002 + 0.1 * 1.8947473673685 / 1.0001)
    #           = (0.8052678946217, -1.6105642068425)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = AdaHessian([w], lr=0.1, update_each=2, seed=0)
    expected = [(0.9000024999375, -1.8000199980002), (0.8052678946217, -1.6105642068425)]
    for step in range(2):
        loss = 2 * w[0] ** 2 + 0.5 * w[1] ** 2
        loss.backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad()
        assert w.detach().tolist() == pytest.approx(expected[step], abs=1e-12)
    assert opt.state[w]["hessian_step"] == 1


def test_newton_step_on_quadratic():
    # f = 10 x^2 + y^2 with lr 1, b1 = b2 = 0, eps 0, k 1: m = g, sqrt(v) = |diag H|, so the step is Newton's.
    p = torch.nn.Parameter(torch.tensor([3.0, -5.0], dtype=torch.float64))
    opt = AdaHessian([p], lr=1.0, betas=(0.0, 0.0), eps=0.0, hessian_power=1.0)
    loss = 10 * p[0] ** 2 + p[1] ** 2
    loss.backward(create_graph=True)
    opt.step()
    assert p.detach().abs().max().item() < 1e-12


CASES = list(itertools.product([1.0, 0.5], [0.0, 0.3], [(1, 0), (3, 0), (2, 3)], [False, True]))


@pytest.mark.parametrize("k,wd,schedule,foreach", CASES)
def test_separable_matches_float64_reference(k, wd, schedule, foreach):
    problem, p0, expected, options = separable_case(k, wd, *schedule)
    params = _leaves(p0)
    opt = AdaHessian(params, **options, foreach=foreach, seed=3)
    run_optimizer(opt, problem, params, steps=9)
    assert max_rel_err(params, expected) < 1e-12
    # The reference is not trivially close: the parameters moved by far more than the tolerance.
    assert max_rel_err(params, p0) > 1e-2


@pytest.mark.parametrize("average_conv_kernel", [True, False])
def test_per_group_options_match_reference(average_conv_kernel):
    problem = Separable.make(seed=5)
    p0 = initial_params(seed=6)
    g1 = GroupCfg(lr=0.04, block_size=4, update_each=2, average_conv_kernel=average_conv_kernel,
                  betas=(0.8, 0.99), indices=[0, 2])
    g2 = GroupCfg(lr=0.02, block_size=1, hessian_power=0.5, hessian_warmup_steps=2, update_each=3,
                  weight_decay=0.1, eps=1e-3, indices=[1, 3, 4])
    expected = reference_run(problem, p0, [g1, g2], steps=8)
    params = _leaves(p0)
    opt = AdaHessian([
        {"params": [params[0], params[2]], "lr": 0.04, "block_size": 4, "update_each": 2, "betas": [0.8, 0.99],
         "average_conv_kernel": average_conv_kernel},
        {"params": [params[1], params[3], params[4]], "lr": 0.02, "hessian_power": 0.5, "hessian_warmup_steps": 2,
         "update_each": 3, "weight_decay": 0.1, "eps": 1e-3},
    ], seed=0)
    run_optimizer(opt, problem, params, steps=8)
    assert max_rel_err(params, expected) < 1e-12


def test_reference_sensitive_to_abs_and_averaging():
    # Guard against a reference that cannot tell implementations apart: dropping the abs, or averaging the
    # signed values, changes the trajectory by far more than the tolerance used above.
    problem = Separable.make()
    p0 = initial_params()
    cfg = GroupCfg(lr=0.05, block_size=4, indices=list(range(len(SHAPES))))
    good = reference_run(problem, p0, [cfg], steps=5)
    no_avg = reference_run(problem, p0, [GroupCfg(lr=0.05, block_size=1, average_conv_kernel=False,
                                                  indices=cfg.indices)], steps=5)
    assert max_rel_err(no_avg, good) > 1e-4


def test_hessian_schedule_and_needs_hessian():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = AdaHessian([p], update_each=3, hessian_warmup_steps=2)
    seen = []
    for _ in range(10):
        need = opt.needs_hessian()
        seen.append(need)
        (p**2).sum().backward(create_graph=need)
        opt.step()
        opt.zero_grad()
    # t < 2, then (t - 2) % 3 == 0: t = 0, 1, 2, 5, 8
    assert [t for t, n in enumerate(seen) if n] == [0, 1, 2, 5, 8]
    assert opt.state[p]["hessian_step"] == 5
    assert opt.step_count == 10


def test_params_without_grad_are_skipped():
    a = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = AdaHessian([a, b], lr=0.1)
    (a**2).sum().backward(create_graph=True)
    opt.step()
    assert b not in opt.state and torch.equal(b.detach(), torch.ones(2, dtype=torch.float64))
    assert not torch.equal(a.detach(), torch.ones(2, dtype=torch.float64))


def test_first_gradient_on_off_step_waits_for_curvature():
    # b first gets a gradient on a step without a Hessian estimate: v would be 0 and the step lr * m_hat / eps,
    # so it is left alone until its first Hessian step.
    a = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = AdaHessian([a, b], lr=0.1, update_each=2)
    (a**2).sum().backward(create_graph=True)
    opt.step()
    opt.zero_grad()
    (a**2 + b**2).sum().backward()  # step 1: off-step
    opt.step()
    opt.zero_grad()
    assert b not in opt.state and torch.equal(b.detach(), torch.ones(2, dtype=torch.float64))
    (a**2 + b**2).sum().backward(create_graph=True)  # step 2: Hessian step
    opt.step()
    assert opt.state[b]["hessian_step"] == 1 and (b.detach() < 1).all()


def _conv_model(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.Tanh(),
        torch.nn.Conv2d(6, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10),
    ).to(dtype)


def test_foreach_matches_single_tensor_float64():
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    results = []
    for foreach in (False, True):
        model = _conv_model(torch.float64)
        opt = AdaHessian(model.parameters(), lr=0.05, weight_decay=1e-3, block_size=4, update_each=2,
                         hessian_power=0.5, foreach=foreach, seed=7)
        for _ in range(10):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward(create_graph=opt.needs_hessian())
            opt.step()
            opt.zero_grad()
        results.append([p.detach().clone() for p in model.parameters()])
    assert max_rel_err(results[1], results[0]) < 1e-12
    model0 = _conv_model(torch.float64)
    assert max_rel_err(list(model0.parameters()), results[0]) > 1e-3  # it moved


def test_n_samples_averages_independent_draws():
    # Non-diagonal Hessian: different draws give different |z * Hz|; n_samples = 2 averages two of them,
    # the same two that a generator with the optimizer's seed produces.
    from optim.hutchinson import hvp, rademacher_like

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64))
    A = torch.tensor([[2.0, 1.0, 0.5], [1.0, 3.0, -1.0], [0.5, -1.0, 1.0]], dtype=torch.float64)
    opt = AdaHessian([w], betas=(0.0, 0.0), n_samples=2, seed=11)
    gen = torch.Generator().manual_seed(0)
    gen.set_state(opt._generator(w.device).get_state())
    loss = 0.5 * w @ A @ w
    (g,) = torch.autograd.grad(loss, [w], create_graph=True)
    expected = 0
    for _ in range(2):
        z = rademacher_like([w], gen)
        (h,) = hvp([g], [w], z, retain_graph=True)
        expected = expected + (z[0] * h).abs() / 2
    loss.backward(create_graph=True)
    opt.step()
    v = opt.state[w]["exp_hessian_diag_sq"]  # b2 = 0: v = D^2
    assert torch.allclose(v.sqrt(), expected, rtol=1e-14)
    assert not torch.allclose(expected, A.diagonal().abs())  # two draws do not give the exact diagonal here
