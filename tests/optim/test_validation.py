"""Every invalid option raises a ValueError naming the argument, the allowed range and the bad value."""

import pytest
import torch

from optim import AdaHessian, MissingGraphError

BAD = [
    ("lr", -0.1, r"lr=-0\.1.*\[0"),
    ("betas", (1.0, 0.999), r"betas\[0\]=1\.0.*\[0\.0, 1\.0\)"),
    ("betas", (0.9, -0.1), r"betas\[1\]=-0\.1.*\[0\.0, 1\.0\)"),
    ("betas", (0.9,), r"betas=\(0\.9,\).*two numbers"),
    ("eps", -1e-8, r"eps=-1e-08.*\[0"),
    ("hessian_power", 1.5, r"hessian_power=1\.5.*\[0\.0, 1\.0\]"),
    ("hessian_power", -0.5, r"hessian_power=-0\.5.*\[0\.0, 1\.0\]"),
    ("block_size", 0, r"block_size=0.*\[1, inf\)"),
    ("block_size", 2.5, r"block_size=2\.5.*integer"),
    ("update_each", 0, r"update_each=0.*\[1, inf\)"),
    ("n_samples", 0, r"n_samples=0.*\[1, inf\)"),
    ("hessian_warmup_steps", -1, r"hessian_warmup_steps=-1.*\[0, inf\)"),
    ("weight_decay", -1.0, r"weight_decay=-1\.0.*\[0"),
    ("average_conv_kernel", "yes", r"average_conv_kernel='yes'"),
]


@pytest.mark.parametrize("name,value,pattern", BAD)
def test_invalid_constructor_values(name, value, pattern):
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=pattern):
        AdaHessian([p], **{name: value})


@pytest.mark.parametrize("name,value,pattern", BAD)
def test_invalid_param_group_values(name, value, pattern):
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=pattern):
        AdaHessian([{"params": [p]}, {"params": [q], name: value}])


def test_boundary_values_are_accepted():
    p = torch.nn.Parameter(torch.ones(2))
    AdaHessian([p], lr=0.0, betas=[0.0, 0.0], eps=0.0, hessian_power=0.0, block_size=1, update_each=1,
               n_samples=1, hessian_warmup_steps=0)
    AdaHessian([p], hessian_power=1.0)


def test_hessian_step_without_graph_raises():
    p = torch.nn.Parameter(torch.ones(2))
    opt = AdaHessian([p])
    (p**2).sum().backward()
    with pytest.raises(MissingGraphError, match=r"backward\(create_graph=True\)"):
        opt.step()
    assert isinstance(MissingGraphError("x"), RuntimeError)


def test_off_step_needs_no_graph():
    p = torch.nn.Parameter(torch.ones(2))
    opt = AdaHessian([p], update_each=2)
    (p**2).sum().backward(create_graph=True)
    opt.step()
    opt.zero_grad()
    assert not opt.needs_hessian()
    (p**2).sum().backward()
    opt.step()  # no error: v is reused


def test_closure_is_called_and_its_loss_returned():
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = AdaHessian([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward(create_graph=opt.needs_hessian())
        return loss

    loss = opt.step(closure)
    assert loss.item() == 2.0 and (p.detach() < 1).all()
