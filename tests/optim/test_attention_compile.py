"""Double backward through attention (hessian_safe_attention) and what torch.compile can and cannot do."""

import pytest
import torch
import torch.nn.functional as F

from optim import AdaHessian, hessian_safe_attention


def _sdpa_hvp():
    q = torch.randn(2, 2, 5, 8, requires_grad=True, generator=torch.Generator().manual_seed(0))
    out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    (g,) = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
    (h,) = torch.autograd.grad(g, q, grad_outputs=torch.ones_like(g))
    return h


def test_fused_attention_has_no_double_backward_math_backend_has():
    # The pinned torch (2.14.1) routes CPU SDPA to its flash kernel, whose backward has no derivative.
    with hessian_safe_attention(enabled=False), pytest.raises(RuntimeError, match="not implemented"):
        _sdpa_hvp()
    with hessian_safe_attention():
        h = _sdpa_hvp()
    assert torch.isfinite(h).all()


def _lm():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    return torch.nn.Sequential(torch.nn.Embedding(20, 16), encoder, torch.nn.Linear(16, 20))


def _lm_loss(model, tokens):
    mask = torch.nn.Transformer.generate_square_subsequent_mask(tokens.shape[1] - 1)
    h = model[1](model[0](tokens[:, :-1]), mask=mask, is_causal=True)
    return F.cross_entropy(model[2](h).reshape(-1, 20), tokens[:, 1:].reshape(-1))


def test_transformer_steps_under_the_helper():
    model = _lm()
    opt = AdaHessian(model.parameters(), lr=0.01, block_size=4, update_each=2)
    tokens = torch.randint(0, 20, (4, 7), generator=torch.Generator().manual_seed(1))
    _lm_loss(model, tokens).backward(create_graph=True)
    failed = False
    try:
        opt.step()
    except RuntimeError as e:  # without the helper, nn.TransformerEncoder's attention has no double backward
        assert "not implemented" in str(e)
        failed = True
    opt.zero_grad()
    for _ in range(3):
        with hessian_safe_attention(enabled=opt.needs_hessian()):
            loss = _lm_loss(model, tokens)
        loss.backward(create_graph=opt.needs_hessian())
        opt.step()
        opt.zero_grad()
    assert opt.step_count == (3 if failed else 4) and all(torch.isfinite(p).all() for p in model.parameters())


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def test_torch_compile_cannot_run_a_hessian_step():
    model = _mlp()
    compiled = torch.compile(model, backend="aot_eager")
    opt = AdaHessian(model.parameters())
    compiled(torch.randn(4, 6)).pow(2).mean().backward(create_graph=True)  # the first backward runs...
    with pytest.raises(RuntimeError, match="does not currently support double backward"):
        opt.step()  # ...the Hessian-vector product through the compiled graph does not


def test_compiled_forward_on_off_steps_eager_on_hessian_steps():
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(2)), torch.randn(8, 1)
    results = []
    for use_compile in (False, True):
        model = _mlp()
        fast = torch.compile(model, backend="aot_eager") if use_compile else model  # same parameters
        opt = AdaHessian(model.parameters(), lr=0.02, update_each=2, seed=0)
        for _ in range(4):
            need = opt.needs_hessian()
            ((model if need else fast)(x) - y).pow(2).mean().backward(create_graph=need)
            opt.step()
            opt.zero_grad()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
