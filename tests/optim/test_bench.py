"""scripts/bench_optim.py: the memory measure and the target checks (its timings are for the benchmark itself)."""

import pytest
import torch

from scripts import bench_optim as bench


def test_cpu_peak_counts_tensor_bytes_in_time_order():
    # 40 MB, then 20 MB, free the 40, then 60 MB: at most 80 MB are alive at once, 0 at the end.
    def fn():
        a = torch.empty(10 * 2**20, dtype=torch.float32)  # 40 MiB
        b = torch.empty(5 * 2**20, dtype=torch.float32)
        del a
        c = torch.empty(15 * 2**20, dtype=torch.float32)
        del b, c

    assert bench.cpu_peak_mb(fn) == pytest.approx(80.0, abs=0.01)


def test_step_memory_is_repeatable_and_sees_the_hessian_graph():
    sgd = bench.step_memory("sgd", "transformer", 4, torch.device("cpu"))
    ah = [bench.step_memory("adahessian", "transformer", 4, torch.device("cpu")) for _ in range(2)]
    assert ah[0] == pytest.approx(ah[1], abs=1e-3)  # a few bytes of small buffers may differ
    assert ah[0] > 1.3 * sgd > 0  # the double-backward graph and the estimate


def test_targets_use_the_same_round_peer_ratio_and_the_every_n_bound():
    res = {
        "adahessian": {"ratio_to_sgd": 4.0, "median_ms": 400.0, "peak_mb": 100.0},
        "adahessian_every2": {"ratio_to_sgd": 2.54},   # bound 1 + 3/2 + 0.05 = 2.55: met
        "adahessian_every4": {"ratio_to_sgd": 1.81},   # bound 1.80: missed
        "adahessian_quarter": {"ratio_to_sgd": 2.01},
        "torch_optimizer": {"ratio_to_sgd": 3.5, "median_ms": 410.0, "ours_over_peer": 1.04, "peak_mb": 100.0},
        "pytorch_optimizer": {"ratio_to_sgd": 3.9, "median_ms": 390.0, "ours_over_peer": 1.02, "peak_mb": 120.0},
    }
    met = {target.split(" <=")[0]: ok for target, _, ok in bench.check_targets(res)}
    # The fastest peer by time is pytorch_optimizer (390 ms); its same-round ratio 1.02 is within 3%, although
    # the ratios to SGD (4.0 vs 3.5 for the other peer) would say otherwise.
    assert met == {"every step": True, "every 2 steps": True, "every 4 steps": False,
                   "quarter-batch Hessian": False, "peak memory": True}


def test_fast_batchnorm_target_is_its_same_round_ratio_to_the_fastest_peer():
    res = {
        "adahessian": {"ratio_to_sgd": 4.0, "median_ms": 400.0},
        "adahessian_fastbn": {"ratio_to_sgd": 3.3, "median_ms": 330.0},
        "torch_optimizer": {"ratio_to_sgd": 4.2, "median_ms": 420.0, "ours_over_peer": 0.95,
                            "fastbn_over_peer": 0.70},
        "pytorch_optimizer": {"ratio_to_sgd": 3.9, "median_ms": 390.0, "ours_over_peer": 1.02,
                              "fastbn_over_peer": 0.86},
    }
    rows = {target: ok for target, _, ok in bench.check_targets(res)}
    # The fastest peer (390 ms) gives 0.86 > 0.85: missed, although 330 / 420 against the other peer would pass.
    assert rows["fast-BN AdaHessian every step <= 0.85 x fastest peer"] is False
    res["pytorch_optimizer"]["fastbn_over_peer"] = 0.85
    assert dict((t, ok) for t, _, ok in bench.check_targets(res))[
        "fast-BN AdaHessian every step <= 0.85 x fastest peer"] is True
    # With the fast convolutions too: its own row, from its own same-round ratio.
    res["adahessian_fast"] = {"ratio_to_sgd": 3.0, "median_ms": 300.0}
    res["pytorch_optimizer"]["fast_over_peer"] = 0.77
    res["torch_optimizer"]["fast_over_peer"] = 0.90  # not the fastest peer: not the target's
    assert dict((t, ok) for t, _, ok in bench.check_targets(res))[
        "fast-BN+conv AdaHessian every step <= 0.85 x fastest peer"] is True


@pytest.mark.parametrize("variant,conv", [("adahessian_fastbn", False), ("adahessian_fast", True)])
def test_fast_runners_swap_their_layers_and_take_a_hessian_step(variant, conv):
    from optim.batchnorm import FastBatchNorm2d
    from optim.conv import FastConv2d

    r = bench.Runner(variant, "resnet20", 2, torch.device("cpu"))
    assert any(isinstance(m, FastBatchNorm2d) for m in r.model.modules())
    assert any(isinstance(m, FastConv2d) for m in r.model.modules()) is conv
    assert not any(type(m) is torch.nn.BatchNorm2d for m in r.model.modules())
    assert r.period == 1 and r.opt.needs_hessian()
    before = [p.detach().clone() for p in r.params]
    r.step()
    assert all(torch.isfinite(p).all() for p in r.params)
    assert any(not torch.equal(a, b) for a, b in zip(before, r.params))
    assert all(len(s) > 0 for s in r.opt.state.values())  # the Hessian moments exist
