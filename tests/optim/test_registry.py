"""build_optimizer: classes, hyperparameters, lr_scale, config errors, disjoint sets as one optimizer."""

import pytest
import torch

import optim
from optim import AdaHessian, CombinedOptimizer, UnknownOptionError, build_optimizer, needs_hessian


def _params(n=2):
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3, 2)) for _ in range(n)]


@pytest.mark.parametrize("name,cls,kwargs,expected", [
    ("sgd", torch.optim.SGD, dict(momentum=0.9, nesterov=True, weight_decay=5e-4),
     dict(momentum=0.9, nesterov=True, weight_decay=5e-4, dampening=0)),
    ("adam", torch.optim.Adam, dict(betas=[0.9, 0.98], eps=1e-8, weight_decay=5e-4),
     dict(betas=(0.9, 0.98), eps=1e-8, weight_decay=5e-4)),
    ("adamw", torch.optim.AdamW, dict(weight_decay=0.05), dict(weight_decay=0.05, betas=(0.9, 0.999))),
    ("adamw", torch.optim.AdamW, dict(), dict(weight_decay=0.0)),  # not torch's 0.01 default
    ("adagrad", torch.optim.Adagrad, dict(eps=1e-10), dict(eps=1e-10, weight_decay=0.0)),
    ("adahessian", AdaHessian, dict(betas=[0.9, 0.98], block_size=32, hessian_power=0.5, update_each=2,
                                    hessian_warmup_steps=10, weight_decay=1e-4, eps=1e-4),
     dict(betas=(0.9, 0.98), block_size=32, hessian_power=0.5, update_each=2, hessian_warmup_steps=10,
          weight_decay=1e-4, eps=1e-4)),
])
def test_builds_each_optimizer(name, cls, kwargs, expected):
    opt = build_optimizer(_params(), name=name, lr=0.2, lr_scale=0.5, **kwargs)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.1)
    for k, v in expected.items():
        assert group[k] == v, k
    assert needs_hessian(opt) is (name == "adahessian")


def test_lr_scale_leaves_weight_decay_alone():
    opt = build_optimizer(_params(), name="adahessian", lr=0.15, lr_scale=4, weight_decay=5e-4 / 0.15)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.6)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(5e-4 / 0.15)


def test_config_errors():
    with pytest.raises(ValueError, match="allowed names: sgd, adam, adamw, adagrad, adahessian"):
        build_optimizer(_params(), name="lamb", lr=0.1)
    with pytest.raises(UnknownOptionError, match="'betas'.*allowed: momentum"):
        build_optimizer(_params(), name="sgd", lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(TypeError, match="'blocksize'"):
        build_optimizer(_params(), name="adahessian", lr=0.1, blocksize=4)
    with pytest.raises(ValueError, match="per_set needs params given as a dict"):
        build_optimizer(_params(), name="sgd", lr=0.1, per_set={"a": {"name": "sgd", "lr": 1}})
    with pytest.raises(ValueError, match="not in params"):
        build_optimizer({"a": _params(1)}, name="sgd", lr=0.1, per_set={"b": {"name": "sgd", "lr": 1}})
    assert optim.OPTIMIZERS == tuple(optim.REGISTRY)  # the registry is the one list
    assert set(optim.OPTIMIZERS) >= {"sgd", "adam", "adamw", "adagrad", "adahessian", "sophiah"}


def test_hydra_partial_with_omegaconf_values():
    from functools import partial

    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"name": "adahessian", "lr": 0.15, "betas": [0.9, 0.98], "block_size": 9,
                            "per_set": {"emb": {"name": "adagrad", "lr": 0.01}}})
    make = partial(build_optimizer, **cfg)  # what hydra's instantiate(_partial_=True) hands the trainer
    opt = make({"emb": _params(1), "dense": _params(2)})
    assert isinstance(opt, CombinedOptimizer)
    assert isinstance(opt.optimizers["dense"], AdaHessian) and opt.optimizers["dense"].defaults["betas"] == (0.9, 0.98)


def _dlrm_like():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 4)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return emb, mlp


def _dlrm_loss(emb, mlp, idx, y):
    return (mlp(emb(idx)).squeeze(-1) - y).pow(2).mean()


def test_combined_optimizer_steps_both_sets_like_separate_optimizers():
    idx, y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1)), torch.randn(16)
    emb, mlp = _dlrm_like()
    opt = build_optimizer({"embeddings": emb.parameters(), "dense": mlp.parameters()}, name="adahessian",
                          lr=0.05, betas=(0.9, 0.98), hessian_power=0.5, seed=3,
                          per_set={"embeddings": {"name": "adagrad", "lr": 0.01}})
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, CombinedOptimizer)
    assert [type(o) for o in opt.optimizers.values()] == [torch.optim.Adagrad, AdaHessian]
    assert len(opt.param_groups) == 2 and opt.param_groups[0]["lr"] == 0.01
    emb2, mlp2 = _dlrm_like()
    ada = torch.optim.Adagrad(emb2.parameters(), lr=0.01, weight_decay=0.0)
    ah = AdaHessian(mlp2.parameters(), lr=0.05, betas=(0.9, 0.98), hessian_power=0.5, seed=3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    sched2 = [torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2], gamma=0.1) for o in (ada, ah)]
    for _ in range(4):
        _dlrm_loss(emb, mlp, idx, y).backward(create_graph=needs_hessian(opt))
        opt.step()
        opt.zero_grad()
        sched.step()
        _dlrm_loss(emb2, mlp2, idx, y).backward(create_graph=True)
        ah.step()
        ada.step()
        ah.zero_grad()
        ada.zero_grad()
        for s in sched2:
            s.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.005])
    for a, b in zip(list(emb.parameters()) + list(mlp.parameters()), list(emb2.parameters()) + list(mlp2.parameters())):
        assert torch.equal(a, b)
    assert not torch.equal(emb.weight, _dlrm_like()[0].weight)


def test_combined_state_dict_round_trip_and_hessian_grads():
    idx, y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1)), torch.randn(16)
    runs = []
    for resume in (False, True):
        emb, mlp = _dlrm_like()
        sets = {"embeddings": list(emb.parameters()), "dense": list(mlp.parameters())}

        def make():
            return build_optimizer(sets, name="adahessian", lr=0.05, update_each=2, seed=3,
                                   per_set={"embeddings": {"name": "adagrad", "lr": 0.01}})

        opt = make()
        params = [p for g in opt.param_groups for p in g["params"]]
        for step in range(6):
            if resume and step == 3:
                sd = opt.state_dict()
                opt = make()
                opt.load_state_dict(sd)
            hg = None
            if opt.needs_hessian():  # Hessian on half the batch, through the combined optimizer
                hg = torch.autograd.grad(_dlrm_loss(emb, mlp, idx[:8], y[:8]), params, create_graph=True)
            _dlrm_loss(emb, mlp, idx, y).backward()
            opt.step(hessian_grads=hg)
            opt.zero_grad()
        runs.append([p.detach().clone() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_combined_under_grad_scaler_matches_unscaled():
    idx, y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1)), torch.randn(16)
    out = []
    for scaled in (False, True):
        emb, mlp = _dlrm_like()
        opt = build_optimizer({"embeddings": emb.parameters(), "dense": mlp.parameters()}, name="adahessian",
                              lr=0.05, seed=3, per_set={"embeddings": {"name": "adam", "lr": 0.01}})
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, enabled=scaled)
        for _ in range(3):
            scaler.scale(_dlrm_loss(emb, mlp, idx, y)).backward(create_graph=opt.needs_hessian())
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
        out.append([p.detach().clone() for p in list(emb.parameters()) + list(mlp.parameters())])
    for a, b in zip(*out):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_dict_params_without_per_set_give_one_optimizer_with_a_group_per_set():
    emb, mlp = _dlrm_like()
    opt = build_optimizer({"embeddings": emb.parameters(), "dense": mlp.parameters()}, name="sgd", lr=0.1,
                          momentum=0.9)
    assert type(opt) is torch.optim.SGD and len(opt.param_groups) == 2
