"""state_dict resume (bitwise, random stream included), state dtypes, in-place updates."""

import copy
import io

import torch

from optim import AdaHessian


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6, 3))


def _batch(step):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(5, 2, 8, generator=g), torch.randint(0, 3, (5,), generator=g)


def _train(model, opt, steps, start=0):
    for s in range(start, start + steps):
        x, y = _batch(s)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad(set_to_none=True)


OPTS = dict(lr=0.05, block_size=4, update_each=3, hessian_warmup_steps=2, weight_decay=1e-3, n_samples=2)


def test_resume_at_step_7_is_bitwise_identical():
    ref = _model()
    ref_opt = AdaHessian(ref.parameters(), seed=1234, **OPTS)
    _train(ref, ref_opt, 20)

    first = _model()
    opt = AdaHessian(first.parameters(), seed=1234, **OPTS)
    _train(first, opt, 7)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)

    resumed = _model()
    resumed.load_state_dict(ckpt["model"])
    opt2 = AdaHessian(resumed.parameters(), seed=999, **OPTS)  # seed and stream come from the checkpoint
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.step_count == 7
    _train(resumed, opt2, 13, start=7)
    for a, b in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_resume_without_rng_state_differs():
    # The test above can fail: if the random stream were not restored, the resumed run would draw other z.
    ref = _model()
    ref_opt = AdaHessian(ref.parameters(), seed=1234, **OPTS)
    _train(ref, ref_opt, 12)
    first = _model()
    opt = AdaHessian(first.parameters(), seed=1234, **OPTS)
    _train(first, opt, 7)
    sd = opt.state_dict()
    sd["adahessian"] = {**sd["adahessian"], "rng": {}}  # drop the generator state
    opt2 = AdaHessian(first.parameters(), seed=1234, **OPTS)
    opt2.load_state_dict(sd)
    _train(first, opt2, 5, start=7)
    assert any(not torch.equal(a, b) for a, b in zip(ref.parameters(), first.parameters()))


def test_seed_none_draws_from_global_rng():
    p = torch.nn.Parameter(torch.ones(3))
    torch.manual_seed(5)
    a = AdaHessian([p])._seed
    torch.manual_seed(5)
    b = AdaHessian([p])._seed
    c = AdaHessian([p])._seed
    assert a == b and a != c


def test_deepcopy_keeps_counters_and_stream():
    model = _model()
    opt = AdaHessian(model.parameters(), seed=3, **OPTS)
    _train(model, opt, 4)
    clone_model = copy.deepcopy(model)
    clone_opt = AdaHessian(clone_model.parameters(), seed=0, **OPTS)
    clone_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    _train(model, opt, 3, start=4)
    _train(clone_model, clone_opt, 3, start=4)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), clone_model.parameters()))
    assert copy.deepcopy(opt).step_count == opt.step_count == 7


def test_state_dtypes_and_in_place_updates():
    half = torch.nn.Linear(4, 3).to(torch.bfloat16)
    f16 = torch.nn.Linear(4, 3).to(torch.float16)
    f64 = torch.nn.Linear(4, 3).double()
    params = list(half.parameters()) + list(f16.parameters()) + list(f64.parameters())
    storages = [p.data_ptr() for p in params]
    before = [p.detach().clone() for p in params]
    opt = AdaHessian(params, lr=0.01)
    x = torch.randn(8, 4)
    loss = (half(x.bfloat16()).float().pow(2).mean() + f16(x.half()).float().pow(2).mean()
            + f64(x.double()).pow(2).mean())
    loss.backward(create_graph=True)
    opt.step()
    for p, ptr, b in zip(params, storages, before):
        want = torch.float64 if p.dtype == torch.float64 else torch.float32
        assert opt.state[p]["exp_avg"].dtype == want and opt.state[p]["exp_hessian_diag_sq"].dtype == want
        assert p.data_ptr() == ptr  # updated in place, not rebound
        assert not torch.equal(p.detach(), b)
    # Loading keeps float32 moments for half params (torch's loader would cast them to the param's dtype).
    opt2 = AdaHessian(params, lr=0.01)
    opt2.load_state_dict(opt.state_dict())
    for p in params:
        assert torch.equal(opt2.state[p]["exp_hessian_diag_sq"], opt.state[p]["exp_hessian_diag_sq"])
        assert opt2.state[p]["exp_avg"].dtype == opt.state[p]["exp_avg"].dtype


def test_foreach_half_params_match_single_tensor():
    outs = []
    for foreach in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).to(torch.bfloat16)
        opt = AdaHessian(model.parameters(), lr=0.01, block_size=4, foreach=foreach, seed=0)
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)).bfloat16()
        for _ in range(3):
            loss = model(x).float().pow(2).mean()
            loss.backward(create_graph=opt.needs_hessian())
            opt.step()
            opt.zero_grad()
        outs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*outs))
