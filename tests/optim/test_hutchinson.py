"""The Hutchinson estimator alone: Rademacher draws, Hessian-vector products, diagonal estimate."""

import pytest
import torch
from torch.func import functional_call

from optim import MissingGraphError
from optim.hutchinson import diag_estimate, hvp, rademacher_like


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, dtype=torch.float64, generator=g), torch.randn(6, 2, dtype=torch.float64, generator=g)


def _loss(model, params, x, y):
    out = functional_call(model, params, (x,))
    return (out - y).pow(2).mean() + 0.1 * out.pow(4).mean()


def _full_hessian(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(flat):
        chunks = flat.split([s.numel() for s in shapes])
        return _loss(model, {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}, x, y)

    return torch.autograd.functional.hessian(f, flat0)


def _grads(model, x, y):
    params = list(model.parameters())
    loss = _loss(model, dict(model.named_parameters()), x, y)
    return params, torch.autograd.grad(loss, params, create_graph=True)


def test_rademacher_entries_shapes_and_determinism():
    ts = [torch.empty(3, 4), torch.empty(5, dtype=torch.float64), torch.empty(())]
    z1 = rademacher_like(ts, torch.Generator().manual_seed(4))
    z2 = rademacher_like(ts, torch.Generator().manual_seed(4))
    z3 = rademacher_like(ts, torch.Generator().manual_seed(5))
    for z, t in zip(z1, ts):
        assert z.shape == t.shape and z.dtype == t.dtype
        assert set(z.reshape(-1).tolist()) <= {-1.0, 1.0}
    assert all(torch.equal(a, b) for a, b in zip(z1, z2))
    assert not all(torch.equal(a, b) for a, b in zip(z1, z3))
    big = rademacher_like([torch.empty(20000)], torch.Generator().manual_seed(0))[0]
    assert abs(big.mean().item()) < 0.03  # about half +1, half -1 (4.2 sigma)


def test_hvp_matches_explicit_hessian_times_vector():
    model = _mlp()
    x, y = _data()
    params, grads = _grads(model, x, y)
    z = rademacher_like(params, torch.Generator().manual_seed(2))
    hz = hvp(grads, params, z)
    expected = _full_hessian(model, x, y) @ torch.cat([t.reshape(-1) for t in z])
    assert torch.allclose(torch.cat([h.reshape(-1) for h in hz]), expected, rtol=1e-10, atol=1e-12)


def test_one_autograd_call_per_sample(monkeypatch):
    model = _mlp()
    x, y = _data()
    params, grads = _grads(model, x, y)
    calls = []
    real = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(len(args[1]) if len(args) > 1 else len(kwargs["inputs"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    diag_estimate(grads, params, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert calls == [len(params)] * 3


def test_signed_estimate_mean_matches_hessian_diagonal():
    model = _mlp()
    x, y = _data()
    H = _full_hessian(model, x, y)
    diag = H.diagonal()
    n = 1500
    params, grads = _grads(model, x, y)
    est = diag_estimate(grads, params, n_samples=n, generator=torch.Generator().manual_seed(0), absolute=False)
    mean = torch.cat([e.reshape(-1) for e in est])
    # Var(z_i (Hz)_i) = sum_{j != i} H_ij^2: a 5-sigma bound on the mean of n draws, per element.
    sigma = ((H**2).sum(1) - diag**2).clamp_min(0).div(n).sqrt()
    assert ((mean - diag).abs() <= 5 * sigma + 1e-12).all()
    # The bound has teeth: pairing Hz with an independent z' (a wrong estimator, mean 0) violates it.
    params, grads = _grads(model, x, y)
    gen, other = torch.Generator().manual_seed(0), torch.Generator().manual_seed(99)
    wrong = 0
    for _ in range(200):
        z = rademacher_like(params, gen)
        hz = hvp(grads, params, z, retain_graph=True)
        wrong = wrong + torch.cat([(h * zz).reshape(-1) for h, zz in zip(hz, rademacher_like(params, other))]) / 200
    assert not ((wrong - diag).abs() <= 5 * ((H**2).sum(1) - diag**2).clamp_min(0).div(200).sqrt() + 1e-12).all()


def test_absolute_estimate_is_abs_of_z_times_hz():
    model = _mlp()
    x, y = _data()
    params, grads = _grads(model, x, y)
    gen = torch.Generator().manual_seed(3)
    z = rademacher_like(params, torch.Generator().manual_seed(3))
    hz = hvp(grads, params, z, retain_graph=True)
    est = diag_estimate(grads, params, generator=gen)
    assert all(torch.equal(e, (zz * h).abs()) for e, zz, h in zip(est, z, hz))


def test_unreached_param_gets_zero_and_missing_graph_raises():
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    (ga,) = torch.autograd.grad((a**3).sum(), [a], create_graph=True)
    est = diag_estimate([ga, None], [a, b], generator=torch.Generator().manual_seed(0))
    assert torch.allclose(est[0], 6 * a.detach()) and torch.equal(est[1], torch.zeros(1, dtype=torch.float64))
    (plain,) = torch.autograd.grad((a**3).sum(), [a])
    with pytest.raises(MissingGraphError, match="create_graph=True"):
        diag_estimate([plain], [a])
