"""Sophia-H against a float64 reference written from the paper's Algorithm 3 (Hutchinson estimator, u ~ N(0, I)),
its two paths against each other, resume, validation, and its place in the registry and combined optimizers."""

from __future__ import annotations

import copy

import pytest
import torch

from optim import CombinedOptimizer, SecondOrderOptimizer, SophiaH, build_optimizer, needs_hessian
from optim.hutchinson import diag_estimate

SHAPES = [(3, 4), (5,), (2, 3, 3)]


def _loss(ws):
    # Non-quadratic and coupled: the Hessian is dense, changes along the trajectory and has negative entries.
    a, b, c = ws
    return (torch.cosh(a).sum() + (a.sum(1) * b[:3]).sum() ** 2 / 7 + torch.sin(b).sum()
            + (c ** 2).sum() * (1 + 0.1 * b.sum()) + torch.log1p(c.pow(2)).sum())


def _init(dtype=torch.float64):
    g = torch.Generator().manual_seed(7)
    return [torch.randn(s, generator=g, dtype=dtype) for s in SHAPES]


def _reference(init, steps, *, lr, betas, gamma, eps, wd, k, u_gen):
    """Algorithm 3 of the paper, t = 1..T, refreshing h when t mod k == 1, written on flat float64 vectors."""
    sizes = [t.numel() for t in init]
    theta = torch.cat([t.reshape(-1) for t in init]).clone()

    def f(flat):
        return _loss([x.view(s) for x, s in zip(flat.split(sizes), SHAPES)])

    m = torch.zeros_like(theta)
    h = torch.zeros_like(theta)
    b1, b2 = betas
    out = []
    for t in range(1, steps + 1):
        g = torch.autograd.functional.jacobian(f, theta)
        m = b1 * m + (1 - b1) * g
        if t % k == 1 % k:
            u = torch.randn(theta.numel(), generator=u_gen, dtype=torch.float64)
            hess = torch.autograd.functional.hessian(f, theta)
            h = b2 * h + (1 - b2) * u * (hess @ u)
        theta = theta - lr * wd * theta
        theta = theta - lr * torch.clamp(m / torch.clamp(gamma * h, min=eps), -1, 1)
        out.append(theta.clone())
    return out


def _run(opt_kwargs, steps, *, foreach=None, dtype=torch.float64):
    ws = [torch.nn.Parameter(t.clone()) for t in _init(dtype)]
    opt = SophiaH(ws, foreach=foreach, **opt_kwargs)
    traj = []
    for _ in range(steps):
        _loss(ws).backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad(set_to_none=True)
        traj.append(torch.cat([w.detach().reshape(-1) for w in ws]).clone())
    return opt, traj


KW = dict(lr=0.05, betas=(0.9, 0.95), gamma=0.5, eps=1e-3, weight_decay=0.1, update_each=3, seed=11)


@pytest.mark.parametrize("foreach", [False, True])
def test_matches_float64_reference_of_the_paper(foreach):
    steps = 8
    opt, traj = _run(KW, steps, foreach=foreach)
    # The reference draws u from a generator in the optimizer's initial state: the estimator's contract is one
    # flat draw per device in parameter order (optim.hutchinson.gaussian_like).
    gen = torch.Generator()
    gen.set_state(SophiaH([torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))], seed=11)
                  .generator(torch.device("cpu")).get_state())
    ref = _reference(_init(), steps, lr=KW["lr"], betas=KW["betas"], gamma=KW["gamma"], eps=KW["eps"],
                     wd=KW["weight_decay"], k=KW["update_each"], u_gen=gen)
    for a, b in zip(traj, ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # Not a trivial trajectory: some coordinates were clipped at lr and some were not, and h went negative.
    h = torch.cat([opt.state[p]["hessian"].reshape(-1) for g in opt.param_groups for p in g["params"]])
    assert (h < 0).any() and (h > 0).any()
    step = (traj[-1] - traj[-2]).abs()
    assert (step < 0.9 * KW["lr"]).any() and (step > 0.99 * KW["lr"] * (1 - KW["lr"] * KW["weight_decay"])).any()
    assert opt.state[opt.param_groups[0]["params"][0]]["hessian_step"] == 3  # steps 0, 3, 6


def test_per_tensor_and_foreach_paths_agree_in_float64():
    kw = dict(KW, update_each=2, hessian_warmup_steps=2, n_samples=2)
    _, a = _run(kw, 7, foreach=False)
    _, b = _run(kw, 7, foreach=True)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-14)


def test_negative_curvature_saturates_at_lr_times_sign():
    # f = -w^2: every estimate u * (H u) = -2 u^2 < 0, so max(gamma h, eps) = eps and each step is lr * sign(m).
    w = torch.nn.Parameter(torch.tensor([0.5, -0.25], dtype=torch.float64))
    opt = SophiaH([w], lr=0.1, update_each=1, seed=0)
    (-(w ** 2).sum()).backward(create_graph=True)
    opt.step()
    assert w.detach().tolist() == pytest.approx([0.6, -0.35], abs=1e-15)  # away from the maximum


def test_state_dict_resume_is_bitwise():
    ref_opt, ref = _run(KW, 9)
    ws = [torch.nn.Parameter(t.clone()) for t in _init()]
    opt = SophiaH(ws, **KW)
    for step in range(9):
        if step == 4:
            sd = copy.deepcopy(opt.state_dict())
            opt = SophiaH(ws, **dict(KW, seed=999))  # another seed: the saved stream must win
            opt.load_state_dict(sd)
        _loss(ws).backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad()
    assert torch.equal(torch.cat([w.detach().reshape(-1) for w in ws]), ref[-1])
    assert opt.step_count == ref_opt.step_count == 9


@pytest.mark.parametrize("name,value,pattern", [
    ("lr", -1.0, r"SophiaH: invalid lr=-1\.0"),
    ("betas", (0.9,), r"betas=\(0\.9,\).*two numbers"),
    ("betas", (0.9, 1.0), r"betas\[1\]=1\.0.*\[0\.0, 1\.0\)"),
    ("gamma", -0.01, r"gamma=-0\.01"),
    ("eps", 0.0, r"eps=0\.0.*\(0\.0, inf\]"),
    ("weight_decay", -0.1, r"weight_decay=-0\.1"),
    ("update_each", 0, r"update_each=0.*\[1, inf\)"),
    ("n_samples", 0, r"n_samples=0"),
    ("foreach", "yes", r"foreach='yes'"),
])
def test_validation(name, value, pattern):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=pattern):
        SophiaH([p], **{name: value})
    with pytest.raises(ValueError, match=pattern):
        SophiaH([{"params": [p]}, {"params": [torch.nn.Parameter(torch.ones(2))], name: value}])


def test_paper_defaults_and_registry():
    opt = build_optimizer([torch.nn.Parameter(torch.ones(2))], name="sophiah", lr=1e-3, betas=[0.96, 0.99])
    g = opt.param_groups[0]
    assert isinstance(opt, SophiaH) and isinstance(opt, SecondOrderOptimizer)
    assert (g["betas"], g["gamma"], g["eps"], g["update_each"], g["weight_decay"]) == ((0.96, 0.99), 0.01, 1e-12,
                                                                                       10, 0.0)
    assert needs_hessian(opt)


def test_gaussian_signed_estimator_is_unbiased():
    # E[u * (H u)] = diag(H) for u ~ N(0, I); H of sum(x^T A x / 2) is A (dense, some negative diagonal entries).
    a = torch.tensor([[2.0, 0.5, 0.2], [0.5, -1.0, 0.3], [0.2, 0.3, 1.5]], dtype=torch.float64)
    x = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    (g,) = torch.autograd.grad(0.5 * x @ a @ x, [x], create_graph=True)
    (d,) = diag_estimate([g], [x], n_samples=4000, generator=torch.Generator().manual_seed(0), absolute=False,
                         distribution="gaussian")
    # Var[u_i (H u)_i] = 2 H_ii^2 + sum_j H_ij^2 <= 12.3: the std of the mean is < 0.056; 5 std of margin.
    assert torch.allclose(d, torch.diagonal(a), atol=0.3)
    (g,) = torch.autograd.grad(0.5 * x @ a @ x, [x], create_graph=True)
    (d_abs,) = diag_estimate([g], [x], n_samples=2, generator=torch.Generator().manual_seed(0), absolute=True,
                             distribution="gaussian")
    assert (d_abs >= 0).all()


def test_member_of_a_combined_optimizer_estimates_before_anyone_moves():
    torch.manual_seed(0)
    emb, mlp = torch.nn.Embedding(10, 4), torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                                                              torch.nn.Linear(8, 1))
    idx, y = torch.randint(0, 10, (16,)), torch.randn(16)
    emb2, mlp2 = copy.deepcopy(emb), copy.deepcopy(mlp)
    opt = build_optimizer({"embeddings": emb.parameters(), "dense": mlp.parameters()}, name="sophiah", lr=0.01,
                          update_each=2, seed=3, per_set={"embeddings": {"name": "adam", "lr": 0.01}})
    assert isinstance(opt, CombinedOptimizer)
    ref_sophia = SophiaH(mlp2.parameters(), lr=0.01, update_each=2, seed=3)
    ref_adam = torch.optim.Adam(emb2.parameters(), lr=0.01, weight_decay=0.0)
    for _ in range(4):
        # The embedding's output feeds the MLP: the double-backward graph saved the embedding rows, which the
        # Adam member would modify in place if it stepped before Sophia-H's Hessian-vector product.
        (mlp(emb(idx)).squeeze(-1) - y).pow(2).mean().backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad()
        (mlp2(emb2(idx)).squeeze(-1) - y).pow(2).mean().backward(create_graph=ref_sophia.needs_hessian())
        ref_sophia.step()
        ref_adam.step()
        ref_sophia.zero_grad()
        ref_adam.zero_grad()
    for a, b in zip(list(emb.parameters()) + list(mlp.parameters()),
                    list(emb2.parameters()) + list(mlp2.parameters())):
        assert torch.equal(a, b)


def test_grad_scaler_gives_the_unscaled_update_and_sub_batch_estimates_work():
    # The base's GradScaler protocol, for a subclass with a signed Gaussian estimate: power-of-two scaling of the
    # gradient and of the Hessian-vector product is exact in float64.
    out = []
    for scaled in (False, True):
        ws = [torch.nn.Parameter(t.clone()) for t in _init()]
        opt = SophiaH(ws, **dict(KW, update_each=2))
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=scaled)
        for _ in range(5):
            scaler.scale(_loss(ws)).backward(create_graph=opt.needs_hessian())
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
        out.append(torch.cat([w.detach().reshape(-1) for w in ws]))
    assert torch.allclose(out[0], out[1], rtol=1e-13, atol=1e-15)
    # hessian_grads: the estimate from other graph-carrying gradients (here the same loss: the same result).
    ws = [torch.nn.Parameter(t.clone()) for t in _init()]
    opt = SophiaH(ws, **dict(KW, update_each=2))
    for _ in range(5):
        hg = torch.autograd.grad(_loss(ws), ws, create_graph=True) if opt.needs_hessian() else None
        _loss(ws).backward()
        opt.step(hessian_grads=hg)
        opt.zero_grad()
    assert torch.allclose(torch.cat([w.detach().reshape(-1) for w in ws]), out[0], rtol=1e-13, atol=1e-15)
