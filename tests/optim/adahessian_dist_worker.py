"""Worker of test_distributed.py (a module of its own so that spawned processes can import it by name)."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from adahessian_testlib import Separable, initial_params

import optim.distributed as odist
from optim import AdaHessian, allreduce_grads_
from optim.hutchinson import hvp, rademacher_like

SAMPLES = 8
STEPS = 6


def separable_problem() -> Separable:
    # Convex (a > 0): the mean over ranks of |H_r| equals |mean H_r|, so 2 ranks on halves of the batch are
    # mathematically the single process on the whole batch.
    return Separable.make(samples=SAMPLES, seed=2, negative=False)


def run_separable(problem: Separable, rank: int = 0, world: int = 1) -> tuple[list[torch.Tensor], int]:
    n = SAMPLES // world
    local = Separable(*[[t[rank * n:(rank + 1) * n] for t in ts] for ts in (problem.a, problem.b, problem.c)])
    params = [torch.nn.Parameter(p) for p in initial_params(seed=3)]
    opt = AdaHessian(params, lr=0.05, block_size=4, update_each=2, seed=7)
    calls = 0
    real = odist.dist.all_reduce

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    for _ in range(STEPS):
        local.loss(params).backward(create_graph=opt.needs_hessian())
        allreduce_grads_(params)
        odist.dist.all_reduce = counting  # count the collectives made by step() alone
        try:
            opt.step()
        finally:
            odist.dist.all_reduce = real
        opt.zero_grad()
    return [p.detach().clone() for p in params], calls


def _mlp_data(rank: int):
    g = torch.Generator().manual_seed(10 + rank)  # each rank its own data
    return torch.randn(6, 5, dtype=torch.float64, generator=g), torch.randn(6, 1, dtype=torch.float64, generator=g)


def run_ddp_mlp(rank: int) -> tuple[list[torch.Tensor], float]:
    """The documented DDP pattern: no_sync + create_graph on Hessian steps, then allreduce_grads_; plain DDP
    backward on the other steps. Returns final params and the error of the first estimate vs the rank mean."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    ddp = torch.nn.parallel.DistributedDataParallel(mlp)
    params = list(mlp.parameters())
    opt = AdaHessian(params, lr=0.01, update_each=2, seed=11)
    x, y = _mlp_data(rank)
    err = float("nan")
    for step in range(4):
        if opt.needs_hessian():
            with ddp.no_sync():
                (ddp(x) - y).pow(2).mean().backward(create_graph=True)
            if step == 0:
                gen = torch.Generator().manual_seed(0)
                gen.set_state(opt._generator(torch.device("cpu")).get_state())
                z = rademacher_like(params, gen)
                hz = hvp([p.grad for p in params], params, z, retain_graph=True)
                local = torch.cat([(zz * h).abs().reshape(-1) for zz, h in zip(z, hz)])
                gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
                dist.all_gather(gathered, local)
                expected = torch.stack(gathered).mean(0)
            allreduce_grads_(params)
        else:
            (ddp(x) - y).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        if step == 0:
            b2 = opt.param_groups[0]["betas"][1]
            got = torch.cat([(opt.state[p]["exp_hessian_diag_sq"] / (1 - b2)).sqrt().reshape(-1) for p in params])
            err = ((got - expected).abs().max() / expected.abs().max()).item()
            local_err = ((got - local).abs().max() / expected.abs().max()).item()
            assert local_err > 1e-3, "ranks' local estimates should differ (different data)"
    return [p.detach().clone() for p in params], err


def worker(rank: int, world: int, port: int, outdir: str) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
    warnings.filterwarnings("ignore", message="Using DistributedDataParallel with create_graph=True")
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        sep, calls = run_separable(separable_problem(), rank, world)
        mlp, err = run_ddp_mlp(rank)
        torch.save({"separable": sep, "calls": calls, "mlp": mlp, "estimate_err": err},
                   os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
