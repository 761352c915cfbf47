"""Two CPU processes on gloo: identical parameters on both ranks, the estimate is the rank mean (one collective),
and a convex separable problem split over 2 ranks equals the single process on the whole batch."""

import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
from adahessian_dist_worker import STEPS, run_separable, separable_problem, worker

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_gloo(tmp_path):
    ctx = mp.start_processes(worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 150
    try:
        while not ctx.join(timeout=2):
            if time.monotonic() > deadline:
                pytest.fail("distributed workers did not finish within 150 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))

    # Both ranks end with the same parameters, bit for bit.
    assert all(torch.equal(a, b) for a, b in zip(r0["separable"], r1["separable"]))
    assert all(torch.equal(a, b) for a, b in zip(r0["mlp"], r1["mlp"]))
    # One collective per Hessian step (3 of the 6 with update_each=2), not one per tensor (5 tensors).
    assert r0["calls"] == r1["calls"] == (STEPS + 1) // 2
    # The first estimate is the mean over ranks of the local estimates (ranks have different data).
    assert r0["estimate_err"] < 1e-12 and r1["estimate_err"] < 1e-12
    # Separable convex problem: 2 ranks x 4 samples == 1 process x 8 samples, up to summation order.
    single, calls = run_separable(separable_problem())
    assert calls == 0  # no process group here: no collective
    for a, b in zip(r0["separable"], single):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    half, _ = run_separable(separable_problem(), rank=0, world=2)  # one half alone, no process group
    assert not torch.allclose(single[0], half[0])
