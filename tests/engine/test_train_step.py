"""engine.trainer.train_step: the GradScaler + clipping path gives the update of the unscaled path."""

import torch

from engine.task_api import MetricSpec, TorchTask
from engine.trainer import train_step
from optim import AdaHessian


def _task(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    loss = lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    return TorchTask(model, [], [], loss, None, MetricSpec("acc", True))


def test_scaled_and_clipped_hessian_step_equals_unscaled():
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    results = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**10)):
        task = _task(0)
        opt = AdaHessian(task.model.parameters(), lr=0.1, seed=0)
        for _ in range(3):
            train_step(task, opt, (x, y), scaler=scaler, grad_clip=0.05)
        results.append([p.detach().clone() for p in task.model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
