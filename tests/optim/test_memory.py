"""No memory growth: step() breaks the param <-> grad cycle that backward(create_graph=True) creates."""

import weakref

import torch

from optim import AdaHessian


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 1))


def _forward(model, x):
    h = model[1](model[0](x))  # tanh saves its output h for backward: the probe of the step's graph
    return model[2](h).pow(2).mean(), weakref.ref(h)


def test_control_graph_survives_without_the_optimizer():
    # The cycle is real: without AdaHessian's step (and without zero_grad), the activations outlive the step.
    model = _model()
    loss, probe = _forward(model, torch.randn(32, 64))
    loss.backward(create_graph=True)
    del loss
    assert probe() is not None
    AdaHessian(model.parameters()).step()
    assert probe() is None  # step() released it, even though zero_grad was never called


def test_every_step_frees_its_graph_and_rss_stays_flat():
    model = _model()
    opt = AdaHessian(model.parameters(), lr=1e-3, update_each=2)
    x = torch.randn(256, 64)
    probes = []
    rss = []
    for step in range(300):
        loss, probe = _forward(model, x)
        loss.backward(create_graph=opt.needs_hessian())
        del loss
        opt.step()
        probes.append(probe)
        # No zero_grad: gradients accumulate (tiny lr), so only step() can have broken the cycle.
        if step in (50, 299):
            rss.append(_rss_mb())
        for p in model.parameters():
            assert p.grad is None or p.grad.grad_fn is None
    assert sum(p() is not None for p in probes) == 0
    # A leak would keep about 256 x 128 x 4 bytes (plus the graph) per step, over 30 MB for 250 steps.
    assert rss[1] - rss[0] < 15


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
