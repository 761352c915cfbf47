"""AdaHessian on CUDA: the same checks as on CPU where the code paths differ on a GPU.

On CUDA ``torch._foreach_*`` runs fused multi-tensor kernels (on CPU it falls back to a loop), z is drawn from a
CUDA generator, GradScaler and autocast take their CUDA paths, and scaled-dot-product attention picks fused
kernels (flash, memory-efficient, cuDNN) that have no double backward. These tests need a GPU: CI has none, so
they are skipped there and run by ``scripts/gpu_checks.sh`` on a machine with one (results in
``results/gpu/``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from adahessian_testlib import Separable, assert_bf16_params_follow_fp32, max_rel_err, run_optimizer, separable_case

from optim import AdaHessian, hessian_safe_attention, update_scaler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _deterministic_cudnn():
    # cuDNN may pick convolution algorithms that accumulate with atomics; the exactness checks need the same
    # rounding on every run.
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _to(problem: Separable, device: torch.device) -> Separable:
    return Separable([a.to(device) for a in problem.a], [b.to(device) for b in problem.b],
                     [c.to(device) for c in problem.c])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("k,wd,schedule", [(1.0, 0.0, (1, 0)), (0.5, 0.3, (3, 0)), (1.0, 0.3, (2, 3))])
def test_separable_matches_float64_reference_on_cuda(foreach, k, wd, schedule):
    # The CPU reference of the spec's formulas against the optimizer stepping on CUDA tensors (fused foreach
    # kernels when foreach=True): the separable objective makes D exact for any z, so they agree to rounding.
    problem, p0, expected, options = separable_case(k, wd, *schedule)
    params = [torch.nn.Parameter(p.clone().to(CUDA)) for p in p0]
    opt = AdaHessian(params, **options, foreach=foreach, seed=3)
    run_optimizer(opt, _to(problem, CUDA), params, steps=9)
    assert all(p.device.type == "cuda" for p in params)
    assert max_rel_err([p.cpu() for p in params], expected) < 1e-12
    assert max_rel_err([p.cpu() for p in params], p0) > 1e-2


def _conv_model(dtype=torch.float64):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.Tanh(),
        torch.nn.Conv2d(6, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10),
    ).to(dtype).to(CUDA)


def _batch(dtype=torch.float64, n=16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 8, 8, generator=g).to(dtype).to(CUDA), torch.randint(0, 10, (n,), generator=g).to(CUDA)


def test_foreach_matches_single_tensor_on_cuda_float64():
    # A non-separable model: both paths draw the same z from the same CUDA generator, so they must agree.
    x, y = _batch()
    results = []
    for foreach in (False, True):
        model = _conv_model()
        opt = AdaHessian(model.parameters(), lr=0.05, weight_decay=1e-3, block_size=4, update_each=2,
                         hessian_power=0.5, foreach=foreach, seed=7)
        for _ in range(10):
            torch.nn.functional.cross_entropy(model(x), y).backward(create_graph=opt.needs_hessian())
            opt.step()
            opt.zero_grad()
        results.append([p.detach().cpu() for p in model.parameters()])
    assert max_rel_err(results[1], results[0]) < 1e-12
    assert max_rel_err([p.detach().cpu() for p in _conv_model().parameters()], results[0]) > 1e-3


def _plain_model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 10)).to(dtype).to(CUDA)


def test_grad_scaler_fp16_autocast_gives_the_unscaled_estimate():
    # fp16 autocast on both runs; one goes through a GradScaler at 2^8. Power-of-two scaling is exact unless it
    # overflows, so the second moment of the estimate (and the update) must match the unscaled run: an
    # implementation that forgets to unscale H z comes out 2^16 too large in v.
    x, y = _batch(torch.float32)
    plain, scaled = _plain_model(), _plain_model()
    o1 = AdaHessian(plain.parameters(), lr=0.05, block_size=4, seed=0)
    o2 = AdaHessian(scaled.parameters(), lr=0.05, block_size=4, seed=0)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**8)
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.float16):
            l1 = torch.nn.functional.cross_entropy(plain(x), y)
        l1.backward(create_graph=True)
        o1.step()
        o1.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            l2 = torch.nn.functional.cross_entropy(scaled(x), y)
        scaler.scale(l2).backward(create_graph=True)
        scaler.step(o2)
        update_scaler(scaler, o2)
        o2.zero_grad()
    assert scaler.get_scale() == 2.0**8 and o2.step_count == 3  # no step was skipped
    for a, b in zip(plain.parameters(), scaled.parameters()):
        va, vb = o1.state[a]["exp_hessian_diag_sq"], o2.state[b]["exp_hessian_diag_sq"]
        assert va.dtype == vb.dtype == torch.float32
        assert torch.allclose(vb, va, rtol=1e-2, atol=1e-12)
        assert torch.allclose(b, a, rtol=1e-3, atol=1e-5)


def test_fp16_hessian_overflow_backs_the_scale_off_on_cuda():
    # At GradScaler's default 2^16 the Hessian-vector product (2^16 times the curvature) overflows in fp16 where
    # the gradients may not: such steps are skipped and the scale backs off until the estimate is finite.
    x, y = _batch(torch.float32)
    model = _conv_model(torch.float32)
    opt = AdaHessian(model.parameters(), lr=0.05, seed=0)
    scaler = torch.amp.GradScaler("cuda")
    skipped = 0
    for _ in range(20):
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward(create_graph=opt.needs_hessian())
        scaler.step(opt)
        skipped += opt.hessian_found_inf
        update_scaler(scaler, opt)
        opt.zero_grad()
    assert skipped >= 1 and opt.step_count == 20 - skipped
    assert all(torch.isfinite(p).all() for p in model.parameters()) and scaler.get_scale() < 2.0**16


def _tiny_transformer():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    return torch.nn.Sequential(torch.nn.Embedding(50, 32), layer, torch.nn.Linear(32, 50)).to(CUDA)


def _lm_batch():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (8, 17), generator=g).to(CUDA)
    return tokens[:, :-1], tokens[:, 1:]


def test_fused_attention_has_no_double_backward_and_the_math_backend_does():
    # Why the suite's transformer tasks wrap Hessian steps in hessian_safe_attention: under bf16 autocast CUDA
    # picks a fused SDPA kernel whose backward cannot be differentiated again.
    x, y = _lm_batch()
    model = _tiny_transformer().train()

    def loss_fn():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, 50), y.reshape(-1))

    params = list(model.parameters())
    with pytest.raises(RuntimeError, match="derivative for .* is not implemented"):
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        torch.autograd.grad(grads, params, [torch.ones_like(g) for g in grads], allow_unused=True)
    with hessian_safe_attention():
        loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hz = torch.autograd.grad(grads, params, [torch.ones_like(g) for g in grads], allow_unused=True)
    assert all(h is None or torch.isfinite(h).all() for h in hz)


def test_bf16_autocast_transformer_trains_with_fp32_state():
    x, y = _lm_batch()
    model = _tiny_transformer()
    opt = AdaHessian(model.parameters(), lr=0.05, block_size=4, seed=0)
    losses = []
    for _ in range(30):
        hessian = opt.needs_hessian()
        with hessian_safe_attention(enabled=hessian), torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 50), y.reshape(-1))
        loss.backward(create_graph=hessian)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # 16 tokens x 8 sequences of random ids: memorized
    assert all(s["exp_hessian_diag_sq"].dtype == torch.float32 for s in opt.state.values())


def test_bf16_params_follow_the_fp32_run():
    x, y = _batch(torch.float32)
    assert_bf16_params_follow_fp32(_plain_model(), x, y)


def test_cuda_memory_flat_over_many_steps():
    # backward(create_graph=True) ties each param to its grad's graph; if step() did not cut that cycle, every
    # Hessian step would leak a graph and allocated memory would grow step by step.
    x, y = _batch(torch.float32, n=32)
    model = _conv_model(torch.float32)
    opt = AdaHessian(model.parameters(), lr=0.01, update_each=2, seed=0)
    marks = {}
    for step in range(1, 301):
        torch.nn.functional.cross_entropy(model(x), y).backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step in (20, 300):
            torch.cuda.synchronize()
            marks[step] = torch.cuda.memory_allocated()
    assert marks[300] == marks[20]


def test_state_dict_resume_on_cuda_is_exact():
    # The CUDA generator's state travels in the optimizer's state_dict: saved at 7 and resumed, step 20 matches.
    x, y = _batch()

    def train(model, opt, steps):
        for _ in range(steps):
            torch.nn.functional.cross_entropy(model(x), y).backward(create_graph=opt.needs_hessian())
            opt.step()
            opt.zero_grad(set_to_none=True)

    full = _conv_model()
    o_full = AdaHessian(full.parameters(), lr=0.05, update_each=2, seed=5)
    train(full, o_full, 20)
    part = _conv_model()
    o_part = AdaHessian(part.parameters(), lr=0.05, update_each=2, seed=5)
    train(part, o_part, 7)
    model_state, opt_state = copy.deepcopy(part.state_dict()), copy.deepcopy(o_part.state_dict())
    resumed = _conv_model()
    resumed.load_state_dict(model_state)
    o_res = AdaHessian(resumed.parameters(), lr=0.05, update_each=2, seed=123)
    o_res.load_state_dict(opt_state)
    train(resumed, o_res, 13)
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
