"""The tensorized transformer (Ma et al. 2019): multi-linear attention against the explicit block-term contraction,
causality, AdaHessian's double backward, and the label-smoothed training loss against a hand computation."""

import math

import pytest
import torch
from helpers import compose_cfg

from optim import build_optimizer
from tasks.language_model import build_model, effective_task
from tasks.language_model.model import TransformerLM, lm_loss
from tasks.language_model.tensorized import MultiLinearAttention, TensorizedTransformerLM, causal_mask3


def small(**kw):
    torch.manual_seed(0)
    args = dict(vocab_size=30, n_layers=2, d_model=12, d_head=5, n_cores=1, d_ff=16, dropout=0.0, max_len=6)
    return TensorizedTransformerLM(**{**args, **kw})


def test_multi_linear_attention_equals_the_explicit_block_term_contraction():
    # float64, loops over every index: T_c[i,j,k] = sum_r g_c[r] ((q_ir+u_r) k_jr + (q_ir+w_r) p_jr) v_kr, averaged
    # over the h cores, kept where j <= i and k <= i, flattened over (j, k) and mapped by W_o (t x t block of W_o).
    torch.manual_seed(1)
    d_model, rank, cores, max_len, t, batch = 4, 3, 3, 5, 4, 2
    attn = MultiLinearAttention(d_model, rank, cores, max_len, dropout=0.0).double()
    with torch.no_grad():
        attn.cores.copy_(torch.randn(cores, rank, dtype=torch.float64))  # distinct cores: the average matters
    x = torch.randn(batch, t, d_model, dtype=torch.float64)
    pos = torch.randn(t, d_model, dtype=torch.float64)
    u, w = torch.randn(rank, dtype=torch.float64), torch.randn(rank, dtype=torch.float64)
    wq, wk, wv = attn.qkv.weight.detach().split(rank, dim=0)
    q, k, v, p = x @ wq.T, x @ wk.T, x @ wv.T, pos @ attn.pos_key.weight.detach().T
    w_o = attn.out.weight.detach().view(d_model, max_len, max_len)
    expected = torch.zeros(batch, t, d_model, dtype=torch.float64)
    for b in range(batch):
        for i in range(t):
            for j in range(i + 1):
                for kk in range(i + 1):
                    entry = 0.0
                    for c in range(cores):
                        g = attn.cores.detach()[c]
                        for r in range(rank):
                            entry += g[r] * ((q[b, i, r] + u[r]) * k[b, j, r] + (q[b, i, r] + w[r]) * p[j, r]) \
                                * v[b, kk, r] / cores
                    expected[b, i] += entry * w_o[:, j, kk]
    torch.testing.assert_close(attn(x, pos, u, w), expected, rtol=1e-10, atol=1e-12)


def test_causal_mask3_keeps_only_past_keys_and_values():
    m = causal_mask3(3)
    assert m.shape == (3, 3, 3) and m[0].sum() == 1 and m[1].sum() == 4 and m[2].sum() == 9
    assert m[1, 1, 0] == 1 and m[1, 2, 0] == 0 and m[1, 0, 2] == 0


def test_predictions_never_see_future_tokens_and_a_short_window_is_its_prefix():
    model = small().eval()
    x = torch.randint(0, 30, (2, 6))
    y = x.clone()
    y[:, 3:] = (y[:, 3:] + 7) % 30  # change the future from position 3 on
    with torch.no_grad():
        a, b, prefix = model(x), model(y), model(x[:, :3])
    assert a.shape == (2, 6, 30)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])
    torch.testing.assert_close(prefix, a[:, :3])  # the last, shorter window of a split
    with pytest.raises(ValueError, match="exceeds max_len=6"):
        model(torch.zeros(1, 7, dtype=torch.long))


def test_parameter_count_is_the_released_layout():
    model = small()
    v, d, r, f, n = 30, 12, 5, 16, 6
    # qkv, r_net, one core, W_o (max_len^2 x d), the FFN, 2 LNs; the output layer is tied (its bias is not)
    per_layer = d * 3 * r + d * r + r + n * n * d + (d * f + f) + (f * d + d) + 2 * 2 * d
    assert model.head.weight is model.embed.weight
    assert sum(p.numel() for p in model.parameters()) == v * d + 2 * r + 2 * per_layer + v


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_adahessian_steps_through_multi_linear_attention(dropout):
    # No fused kernel anywhere: the Hessian-vector product must reach the attention's factor matrices and cores.
    model = small(dropout=dropout, n_cores=2).train()
    opt = build_optimizer(model.parameters(), name="adahessian", lr=0.1, block_size=4, hessian_power=0.5)
    x = torch.randint(0, 30, (3, 7))
    attn = model.layers[0].attn
    before = attn.qkv.weight.detach().clone()
    loss = lm_loss(model, (x[:, :-1], x[:, 1:]), label_smoothing=0.1)
    loss.backward(create_graph=True)
    opt.step()
    opt.zero_grad(set_to_none=True)
    for param in (attn.qkv.weight, attn.cores, attn.out.weight):
        assert opt.state[param]["exp_hessian_diag_sq"].abs().sum() > 0
    assert not torch.equal(before, attn.qkv.weight)


def test_label_smoothed_loss_matches_a_hand_computation():
    # Two tokens, vocabulary 3: logits fixed by a stub model, loss = mean((1-eps) * -log p_y + eps * mean_v -log p_v).
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]]])

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits

    y = torch.tensor([[0, 2]])
    z1, z2 = math.exp(2) + 1 + math.exp(-1), 2 * math.exp(0.5) + math.exp(1)
    nll = [-(2 - math.log(z1)), -(1 - math.log(z2))]
    uniform = [-(1 / 3) * ((2 - math.log(z1)) + (0 - math.log(z1)) + (-1 - math.log(z1))),
               -(1 / 3) * (2 * (0.5 - math.log(z2)) + (1 - math.log(z2)))]
    eps = 0.1
    expected = sum((1 - eps) * n + eps * u for n, u in zip(nll, uniform)) / 2
    assert math.isclose(lm_loss(Fixed(), (None, y), label_smoothing=eps).item(), expected, rel_tol=1e-6)
    assert math.isclose(lm_loss(Fixed(), (None, y)).item(), sum(nll) / 2, rel_tol=1e-6)


def test_arch_selects_the_model_and_unknown_arch_is_rejected():
    paper = effective_task(compose_cfg(["task=ptb_transformer"]))
    assert (paper.model.arch, paper.model.n_layers, paper.model.d_model, paper.model.d_ff, paper.bptt) == (
        "tensorized", 3, 256, 2100, 32)
    assert (paper.model.tensorized.d_head, paper.model.tensorized.n_cores) == (40, 1)
    smoke = effective_task(compose_cfg(["task=ptb_transformer", "trainer=smoke"]))
    assert isinstance(build_model(smoke, 50), TensorizedTransformerLM)
    standard = effective_task(compose_cfg(["task=ptb_transformer", "trainer=smoke", "task.model.arch=standard"]))
    model = build_model(standard, 50)
    assert isinstance(model, TransformerLM) and model.blocks[0].attn.n_heads == 2 and model.d_model == 32
    bad = effective_task(compose_cfg(["task=ptb_transformer", "trainer=smoke", "task.model.arch=lstm"]))
    with pytest.raises(ValueError, match="task.model.arch='lstm' is not allowed; choose one of tensorized, standard"):
        build_model(bad, 50)
