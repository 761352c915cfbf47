"""The transformer LM: causal, tied, pre-norm; AdaHessian's double backward runs through its attention."""

import pytest
import torch
from helpers import compose_cfg

from optim import build_optimizer
from tasks.language_model import effective_task
from tasks.language_model.model import TransformerLM, lm_loss


def small(**kw):
    torch.manual_seed(0)
    args = dict(vocab_size=50, n_layers=3, d_model=16, n_heads=2, d_ff=32, dropout=0.0, max_len=12)
    return TransformerLM(**{**args, **kw})


def test_predictions_never_see_future_tokens():
    model = small().eval()
    x = torch.randint(0, 50, (2, 10))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 7) % 50  # change the future from position 6 on
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 10, 50)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_output_layer_is_tied_to_the_embedding_and_the_parameter_count_is_a_3_layer_transformer():
    model = small()
    assert model.head.weight is model.embed.weight and len(model.blocks) == 3
    d, f, v = 16, 32, 50
    per_block = (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d  # qkv, out, ffn, 2 LNs
    assert sum(p.numel() for p in model.parameters()) == v * d + 3 * per_block + 2 * d + v  # + final LN, head bias
    untied = small(tie_embeddings=False)
    assert sum(p.numel() for p in untied.parameters()) == v * d * 2 + 3 * per_block + 2 * d + v


def test_loss_is_mean_cross_entropy_and_starts_near_log_vocab():
    model = small().eval()
    x = torch.randint(0, 50, (4, 8))
    y = torch.randint(0, 50, (4, 8))
    with torch.no_grad():
        loss = lm_loss(model, (x, y))
        logp = torch.log_softmax(model(x), -1)
    expected = -logp.gather(-1, y[..., None]).mean()
    torch.testing.assert_close(loss, expected)
    assert abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 1.0


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_adahessian_steps_through_attention_with_the_math_backend(dropout):
    # The fused CPU/CUDA attention kernels have no double backward; attention="math" must make HVPs work, with
    # attention dropout too, and the Hessian estimate must reach the attention weights.
    model = small(dropout=dropout, attention_dropout=dropout, d_model=32, n_heads=2, d_ff=64).train()
    opt = build_optimizer(model.parameters(), name="adahessian", lr=0.1, block_size=4, hessian_power=0.5)
    x = torch.randint(0, 50, (3, 12))
    before = model.blocks[0].attn.qkv.weight.detach().clone()
    loss = lm_loss(model, (x[:, :-1], x[:, 1:]))
    loss.backward(create_graph=True)
    opt.step()
    opt.zero_grad(set_to_none=True)
    hess = opt.state[model.blocks[0].attn.qkv.weight]["exp_hessian_diag_sq"]
    assert hess.abs().sum() > 0 and not torch.equal(before, model.blocks[0].attn.qkv.weight)


def test_unknown_attention_backend_is_rejected():
    with pytest.raises(ValueError, match="attention='flash' is not allowed"):
        small(attention="flash")


def test_smoke_profile_shrinks_only_the_model():
    t = effective_task(compose_cfg(["task=ptb_transformer", "trainer=smoke", "task.bptt=20"]))
    assert (t.model.d_model, t.model.n_layers, t.model.dropout, t.bptt) == (32, 3, 0.1, 20) and "profiles" not in t
    paper = effective_task(compose_cfg(["task=ptb_transformer"]))
    assert (paper.model.d_model, paper.model.dropout, paper.bptt) == (256, 0.3, 32)
    with pytest.raises(ValueError, match="a profile may set only model"):
        effective_task(compose_cfg(["task=ptb_transformer", "trainer=smoke", "+task.profiles.smoke.bptt=5"]))
