"""Mixed precision: GradScaler (gradient and Hessian estimate unscaled, inf steps skipped) and autocast."""

import pytest
import torch
from adahessian_testlib import assert_bf16_params_follow_fp32

from optim import AdaHessian


def _model(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 10)).to(dtype)


def _data(dtype):
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 8, 8, generator=g).to(dtype), torch.randint(0, 10, (8,), generator=g)


def _loss(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grad_scaler_gives_the_unscaled_update(dtype):
    x, y = _data(dtype)
    plain, scaled = _model(dtype), _model(dtype)
    o1 = AdaHessian(plain.parameters(), lr=0.05, update_each=2, block_size=4, seed=0)
    o2 = AdaHessian(scaled.parameters(), lr=0.05, update_each=2, block_size=4, seed=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for _ in range(5):
        _loss(plain, x, y).backward(create_graph=o1.needs_hessian())
        o1.step()
        o1.zero_grad()
        scaler.scale(_loss(scaled, x, y)).backward(create_graph=o2.needs_hessian())
        scaler.step(o2)
        scaler.update()
        o2.zero_grad()
    assert scaler.get_scale() == 2.0**12
    # Power-of-two scaling is exact, so the two runs agree to rounding (here: bitwise).
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for a, b in zip(plain.parameters(), scaled.parameters()):
        assert torch.allclose(a, b, rtol=tol, atol=tol)
    assert not torch.allclose(next(plain.parameters()), next(_model(dtype).parameters()))


def test_inf_gradient_skips_the_whole_step():
    x, y = _data(torch.float32)
    model = _model(torch.float32)
    opt = AdaHessian(model.parameters(), seed=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    scaler.scale(_loss(model, x, y)).backward(create_graph=True)
    before = [p.detach().clone() for p in model.parameters()]
    rng = opt._generator(torch.device("cpu")).get_state()
    with torch.no_grad():
        model[0].weight.grad[0, 0, 0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert opt.step_count == 0 and len(opt.state) == 0
    assert torch.equal(opt._generator(torch.device("cpu")).get_state(), rng)  # no z drawn
    assert scaler.get_scale() == 2.0**11
    assert all(not p.grad.requires_grad for p in model.parameters())  # graph released all the same
    opt.zero_grad()
    scaler.scale(_loss(model, x, y)).backward(create_graph=opt.needs_hessian())
    scaler.step(opt)
    assert opt.step_count == 1


def test_explicit_unscale_needs_the_hessian_scale():
    x, y = _data(torch.float64)
    ref, model = _model(torch.float64), _model(torch.float64)
    o_ref = AdaHessian(ref.parameters(), seed=0)
    opt = AdaHessian(model.parameters(), seed=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    _loss(ref, x, y).backward(create_graph=True)
    o_ref.step()

    scaler.scale(_loss(model, x, y)).backward(create_graph=True)
    scaler.unscale_(opt)  # e.g. to clip the gradient
    with pytest.raises(RuntimeError, match="hessian_scale=scaler.get_scale"):
        scaler.step(opt)
    opt2 = AdaHessian(model.parameters(), seed=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    opt.zero_grad()
    scaler.scale(_loss(model, x, y)).backward(create_graph=True)
    scaler.unscale_(opt2)
    scaler.step(opt2, hessian_scale=scaler.get_scale())
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-15)


def test_autocast_bfloat16_forward():
    x, y = _data(torch.float32)
    model = _model(torch.float32)
    opt = AdaHessian(model.parameters(), lr=0.05, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = _loss(model, x, y)
        loss.backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad()
    for p, b in zip(model.parameters(), before):
        assert p.dtype == torch.float32 and torch.isfinite(p).all() and not torch.equal(p, b)
        assert opt.state[p]["exp_hessian_diag_sq"].dtype == torch.float32
        assert (opt.state[p]["exp_hessian_diag_sq"] > 0).any()


def test_bfloat16_params_with_fp32_state_follow_fp32_run():
    x, y = _data(torch.float32)
    assert_bf16_params_follow_fp32(_model(torch.float32), x, y)


def _bn_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.Tanh(),
                               torch.nn.Conv2d(6, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10))


def _fp16_step(model, opt, scaler, x, y, update):
    with torch.autocast("cpu", dtype=torch.float16):
        loss = _loss(model, x, y)
    scaler.scale(loss).backward(create_graph=opt.needs_hessian())
    scaler.step(opt)
    update(scaler, opt)
    opt.zero_grad()


def test_hessian_overflow_skips_the_step_and_backs_the_scale_off():
    # fp16 autocast at loss scale 2^12: this model's gradients stay finite but the Hessian-vector product (2^12
    # times the curvature) overflows in the first conv's double backward (found by trying 2^4, 2^8, 2^12).
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    model = _bn_model()
    opt = AdaHessian(model.parameters(), lr=0.05, seed=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    before = [p.detach().clone() for p in model.parameters()]
    rng = opt._generator(torch.device("cpu")).get_state()

    from optim import update_scaler
    _fp16_step(model, opt, scaler, x, y, update_scaler)
    assert opt.hessian_found_inf and opt.step_count == 0 and len(opt.state) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.equal(opt._generator(torch.device("cpu")).get_state(), rng)  # the draw was undone
    assert all(p.grad is None or not p.grad.requires_grad for p in model.parameters())
    assert scaler.get_scale() == 2.0**11
    for _ in range(8):
        _fp16_step(model, opt, scaler, x, y, update_scaler)
    assert not opt.hessian_found_inf and opt.step_count >= 1 and scaler.get_scale() <= 2.0**11
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(before[0], next(model.parameters()))

    # A bare scaler.update() never learns of the overflow: the scale stays and every step is skipped.
    model2 = _bn_model()
    opt2 = AdaHessian(model2.parameters(), lr=0.05, seed=0)
    scaler2 = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for _ in range(3):
        _fp16_step(model2, opt2, scaler2, x, y, lambda s, o: s.update())
    assert opt2.step_count == 0 and scaler2.get_scale() == 2.0**12


def test_combined_optimizer_skips_every_member_on_hessian_overflow():
    from optim import CombinedOptimizer, update_scaler
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    model = _bn_model()
    head = list(model[5].parameters())
    body = [p for p in model.parameters() if all(p is not h for h in head)]
    opt = CombinedOptimizer({"body": AdaHessian(body, lr=0.05, seed=0), "head": torch.optim.Adagrad(head, lr=0.1)})
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    before = [p.detach().clone() for p in model.parameters()]
    _fp16_step(model, opt, scaler, x, y, update_scaler)
    assert opt.hessian_found_inf and scaler.get_scale() == 2.0**11
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the Adagrad head did not move
