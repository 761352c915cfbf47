"""Shared pieces of the optim tests: a separable objective and a float64 reference of AdaHessian written from the
formulas of the spec (not from optim/), so that the tests compare two independent implementations.

Separable objective: f(P) = sum over tensors and elements of  a * (p - c)^2 + b * p^4  (mean over samples when a,
b, c carry a leading sample dim). Its Hessian is diagonal, H_ii = 2a + 12 b p^2, so z * Hz = H_ii for every
Rademacher z and the estimate D = |H_ii| is exact: the optimizer can be checked to rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# One tensor of every averaging case: conv2d kernel (4-D), conv1d kernel (3-D), 2-D whose 15 elements leave a
# partial block of 3 for block_size 4, 1-D, 0-D.
SHAPES: tuple[tuple[int, ...], ...] = ((3, 2, 3, 3), (4, 2, 5), (3, 5), (7,), ())


@dataclass
class Separable:
    """Coefficients of the separable objective, one (a, b, c) triple per tensor, optionally per sample."""

    a: list[torch.Tensor]
    b: list[torch.Tensor]
    c: list[torch.Tensor]

    @staticmethod
    def make(shapes=SHAPES, seed: int = 0, samples: int | None = None, negative: bool = True,
             dtype=torch.float64) -> "Separable":
        g = torch.Generator().manual_seed(seed)
        lead = () if samples is None else (samples,)
        a, b, c = [], [], []
        for s in shapes:
            lo = -0.5 if negative else 0.2  # negative curvature somewhere: |H| differs from H and from |mean H|
            a.append(torch.empty(lead + s, dtype=dtype).uniform_(lo, 2.0, generator=g))
            b.append(torch.empty(lead + s, dtype=dtype).uniform_(0.0, 0.3, generator=g))
            c.append(torch.empty(lead + s, dtype=dtype).uniform_(-1.0, 1.0, generator=g))
        return Separable(a, b, c)

    def loss(self, params) -> torch.Tensor:
        total = 0.0
        for p, a, b, c in zip(params, self.a, self.b, self.c):
            term = a * (p - c) ** 2 + b * p**4
            total = total + (term.sum() if a.shape == p.shape else term.reshape(term.shape[0], -1).sum(1).mean())
        return total

    def grad(self, params) -> list[torch.Tensor]:
        return [_mean0(2 * a * (p - c) + 4 * b * p**3, a, p) for p, a, b, c in zip(params, self.a, self.b, self.c)]

    def hess_diag(self, params) -> list[torch.Tensor]:
        return [_mean0(2 * a + 12 * b * p**2, a, p) for p, a, b, c in zip(params, self.a, self.b, self.c)]


def _mean0(x: torch.Tensor, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return x if a.shape == p.shape else x.mean(dim=0)


def initial_params(shapes=SHAPES, seed: int = 1, dtype=torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.empty(s, dtype=dtype).uniform_(-1.0, 1.0, generator=g) for s in shapes]


def reference_average(d: torch.Tensor, block_size: int, average_conv_kernel: bool) -> torch.Tensor:
    """Spatial averaging written with explicit loops, independent of optim.spatial."""
    if d.ndim >= 3:
        if not average_conv_kernel:
            return d.clone()
        out = torch.empty_like(d)
        for i in range(d.shape[0]):
            for j in range(d.shape[1]):
                out[i, j] = d[i, j].mean()
        return out
    if d.ndim == 2 and block_size > 1:
        flat = d.reshape(-1).clone()
        for start in range(0, flat.numel(), block_size):
            flat[start:start + block_size] = flat[start:start + block_size].mean()
        return flat.view(d.shape)
    return d.clone()


@dataclass
class GroupCfg:
    lr: float = 0.15
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-4
    weight_decay: float = 0.0
    hessian_power: float = 1.0
    block_size: int = 1
    average_conv_kernel: bool = True
    update_each: int = 1
    hessian_warmup_steps: int = 0
    indices: list[int] = field(default_factory=list)  # which tensors of the parameter list are in the group


def reference_run(problem: Separable, params0: list[torch.Tensor], groups: list[GroupCfg], steps: int,
                  hessian_problem: Separable | None = None) -> list[torch.Tensor]:
    """AdaHessian by the spec's formulas 1-7, in float64, on the separable problem (D = |diag H| exactly).

    ``hessian_problem`` (default: ``problem``) is the objective whose Hessian feeds D (the sub-batch path)."""
    hp = hessian_problem or problem
    params = [p.clone().double() for p in params0]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    tau = [0] * len(params)
    for t in range(steps):
        grads = problem.grad(params)
        hdiag = hp.hess_diag(params)
        new = [p.clone() for p in params]
        for g in groups:
            b1, b2 = g.betas
            hess_step = t < g.hessian_warmup_steps or (t - g.hessian_warmup_steps) % g.update_each == 0
            for i in g.indices:
                if hess_step:
                    d = reference_average(hdiag[i].abs(), g.block_size, g.average_conv_kernel)
                    v[i] = b2 * v[i] + (1 - b2) * d**2
                    tau[i] += 1
                m[i] = b1 * m[i] + (1 - b1) * grads[i]
                m_hat = m[i] / (1 - b1 ** (t + 1))
                denom = torch.sqrt(v[i] / (1 - b2 ** tau[i])) ** g.hessian_power + g.eps
                new[i] = params[i] - g.lr * g.weight_decay * params[i] - g.lr * m_hat / denom
        params = new
    return params


def max_rel_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    err = 0.0
    for x, y in zip(a, b):
        scale = max(y.abs().max().item(), 1e-30) if y.numel() else 1.0
        err = max(err, ((x.detach() - y).abs().max().item() / scale) if x.numel() else 0.0)
    return err


def run_optimizer(opt, problem: Separable, params: list[torch.Tensor], steps: int) -> None:
    """The canonical loop on the separable problem."""
    for _ in range(steps):
        loss = problem.loss(params)
        loss.backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad(set_to_none=True)



def separable_case(k: float, wd: float, update_each: int, warmup: int, steps: int = 9):
    """The separable problem, its start, the float64 reference after ``steps`` and the matching AdaHessian options
    (one group over every averaging case, block 4)."""
    problem = Separable.make()
    p0 = initial_params()
    cfg = GroupCfg(lr=0.05, weight_decay=wd, hessian_power=k, block_size=4, update_each=update_each,
                   hessian_warmup_steps=warmup, indices=list(range(len(SHAPES))))
    expected = reference_run(problem, p0, [cfg], steps=steps)
    options = dict(lr=0.05, weight_decay=wd, hessian_power=k, block_size=4, update_each=update_each,
                   hessian_warmup_steps=warmup)
    return problem, p0, expected, options


def assert_bf16_params_follow_fp32(ref: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 3) -> None:
    """bf16 parameters with fp32 state take the fp32 run's update up to bf16 rounding (of the forward, of H z and
    of the stored weights). eps 0.05: with the default 1e-4, elements of near-zero curvature step by about
    lr * m / eps and that step hinges on bf16 rounding of H z (one element moved 0.58 in fp32, 0.13 in bf16)."""
    import copy

    from optim import AdaHessian

    half = copy.deepcopy(ref).to(torch.bfloat16)
    start = [p.detach().clone() for p in half.parameters()]
    o_ref = AdaHessian(ref.parameters(), lr=0.01, eps=0.05, seed=0)
    o_half = AdaHessian(half.parameters(), lr=0.01, eps=0.05, seed=0)
    for _ in range(steps):
        torch.nn.functional.cross_entropy(ref(x), y).backward(create_graph=True)
        o_ref.step()
        o_ref.zero_grad()
        torch.nn.functional.cross_entropy(half(x.bfloat16()), y).backward(create_graph=True)
        o_half.step()
        o_half.zero_grad()
    for a, b, b0 in zip(ref.parameters(), half.parameters(), start):
        assert b.dtype == torch.bfloat16 and o_half.state[b]["exp_avg"].dtype == torch.float32
        da, db = (a.detach() - b0.float()).reshape(-1), (b.detach().float() - b0.float()).reshape(-1)
        assert torch.nn.functional.cosine_similarity(da, db, dim=0) > 0.95
