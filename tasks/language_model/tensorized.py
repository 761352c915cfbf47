"""The tensorized transformer LM of Ma et al. (NeurIPS 2019, "A Tensorized Transformer for Language Modeling"),
the model behind the paper's Table 4 (its ref. [35]): multi-linear attention by block-term tensor decomposition.

Multi-linear attention (Ma et al., Sec. 3). With ``Q = X W_q``, ``K = X W_k``, ``V = X W_v`` (``N x R``, the factor
matrices shared by every block term) and ``h`` diagonal core tensors ``G_c`` (``R x R x R``, trainable diagonal
``g_c``), one block term is the third-order tensor ``T_c = G_c x1 Q x2 K x3 V``::

    T_c[i, j, k] = sum_r g_c[r] Q[i, r] K[j, r] V[k, r]                   (query i, key j, value k)

The layer averages the block terms, splits the ``N x N x N`` tensor along the query mode into ``N`` matrices and
concatenates each flattened (``N x N^2``, "SplitConcat"), and maps it to ``d_model`` with ``W_o`` (``N^2 x d_model``):
``out = SplitConcat((T_1 + ... + T_h) / h) W_o``. Because the factors are shared and ``T_c`` is linear in ``g_c``, the
average of the ``h`` terms is exactly the single term with the mean core ``(g_1 + ... + g_h) / h``; it is computed so
(the test checks it against the explicit sum).

Facts of the released configuration (maxindian/The-compression-of-Transformer, BTD-Transformer, built on
Transformer-XL's code): PTB ``run_ptb.sh`` trains 3 layers, d_model 256, one core (``--n_head 1``, "core-1"),
rank ``R = d_head = 40``, FFN 2100 (ReLU), dropout 0.3, windows of ``tgt_len = 32`` tokens, no memory; post-norm
layers (``LN(x + Attn(x))``, ``LN(x + FFN(x))``); tied input/output embeddings (input scaled by sqrt(d_model));
no position added to the input: position enters through a second key term built from sinusoidal embeddings of the
key positions (Transformer-XL's ``r_net`` with the two global biases ``u``, ``w``)::

    T[i, j, k] = sum_r g[r] ((Q[i, r] + u[r]) K[j, r] + (Q[i, r] + w[r]) P[j, r]) V[k, r],    P = PE(N-1-j) W_r

and weights drawn from N(0, 0.02) (Transformer-XL's ``init_std``). Two departures, both because this is a language
model whose targets are the next tokens of the same window:

* Causality. The released code builds a causal mask but never applies it, so position ``i`` mixes keys and values
  of later positions (its own target among them). Here ``T[i, j, k] = 0`` unless ``j <= i`` and ``k <= i``: output
  ``i`` depends on tokens ``0..i`` only, and a shorter window (the last of a split) gives exactly the outputs of the
  same prefix in a full window (``W_o`` is read on its top-left ``t x t`` block).
* No fused kernels: every operation is an einsum/matmul, so AdaHessian's double backward runs through it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .model import sinusoidal_positions


def causal_mask3(length: int, device=None) -> torch.Tensor:
    """``(length, length, length)`` float mask: 1 where key ``j`` and value ``k`` are both at or before query ``i``."""
    idx = torch.arange(length, device=device)
    past = idx[None, :] <= idx[:, None]  # (i, j): j <= i
    return (past[:, :, None] & past[:, None, :]).float()


class MultiLinearAttention(nn.Module):
    """``forward(x (B, t, d_model), pos (t, d_model)) -> (B, t, d_model)`` for ``t <= max_len``."""

    def __init__(self, d_model: int, d_head: int, n_cores: int, max_len: int, dropout: float):
        super().__init__()
        if min(d_model, d_head, n_cores, max_len) < 1:
            raise ValueError(f"multi-linear attention needs positive sizes; got d_model={d_model}, d_head={d_head}, "
                             f"n_cores={n_cores}, max_len={max_len}")
        self.d_head, self.max_len = d_head, max_len
        self.qkv = nn.Linear(d_model, 3 * d_head, bias=False)  # the factor matrices, shared by every core
        self.pos_key = nn.Linear(d_model, d_head, bias=False)  # Transformer-XL's r_net
        # Diagonal core tensors; the released code draws each as a softmax over the rank.
        self.cores = nn.Parameter(torch.softmax(torch.randn(n_cores, d_head), dim=-1))
        self.out = nn.Linear(max_len * max_len, d_model, bias=False)  # W_o: the (key, value) plane to d_model
        self.drop = nn.Dropout(dropout)

    def block_tensor(self, x: torch.Tensor, pos: torch.Tensor, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The masked, core-averaged third-order tensor ``T`` of shape ``(B, t, t, t)`` (query, key, value)."""
        t = x.size(1)
        q, k, v = self.qkv(x).split(self.d_head, dim=-1)
        p = self.pos_key(pos)  # (t, R)
        g = self.cores.mean(0)  # the average of the block terms = one term with the mean core
        # A[b, i, j, r] = g_r ((q_ir + u_r) k_jr + (q_ir + w_r) p_jr): the query-key plane per rank, then V's mode.
        a = torch.einsum("bir,bjr->bijr", (q + u) * g, k) + torch.einsum("bir,jr->bijr", (q + w) * g, p)
        return torch.einsum("bijr,bkr->bijk", a, v) * causal_mask3(t, x.device).to(x.dtype)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={self.max_len}")
        tensor = self.block_tensor(x, pos, u, w)  # (B, t, t, t)
        w_o = self.out.weight.view(-1, self.max_len, self.max_len)[:, :t, :t].reshape(-1, t * t)
        return self.drop(tensor.reshape(b, t, t * t) @ w_o.t())


class TensorizedLayer(nn.Module):
    """Post-norm: ``x = LN(x + Attn(x)); x = LN(x + FFN(x))`` with a ReLU FFN (Transformer-XL's layout)."""

    def __init__(self, d_model: int, d_head: int, n_cores: int, d_ff: int, max_len: int, dropout: float):
        super().__init__()
        self.attn = MultiLinearAttention(d_model, d_head, n_cores, max_len, dropout)
        self.ln1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model),
                                nn.Dropout(dropout))
        self.ln2 = nn.LayerNorm(d_model)

    def forward(self, x, pos, u, w):
        x = self.ln1(x + self.attn(x, pos, u, w))
        return self.ln2(x + self.ff(x))


class TensorizedTransformerLM(nn.Module):
    """``forward(tokens (B, T)) -> logits (B, T, vocab)``, windows of at most ``max_len`` tokens."""

    def __init__(self, vocab_size: int, n_layers: int = 3, d_model: int = 256, d_head: int = 40, n_cores: int = 1,
                 d_ff: int = 2100, dropout: float = 0.3, max_len: int = 32, tie_embeddings: bool = True):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        # Sinusoidal embeddings of the key positions, oldest first (Transformer-XL's descending pos_seq).
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model).flip(0), persistent=False)
        self.u = nn.Parameter(torch.empty(d_head))  # Transformer-XL's r_w_bias, shared by the layers
        self.w = nn.Parameter(torch.empty(d_head))  # r_r_bias
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(TensorizedLayer(d_model, d_head, n_cores, d_ff, max_len, dropout)
                                    for _ in range(n_layers))
        self.head = nn.Linear(d_model, vocab_size)
        if tie_embeddings:
            self.head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, 1.0, std)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.u, std=std)
        nn.init.normal_(self.w, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.size(1)
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={self.max_len} (task.bptt)")
        x = self.drop(self.embed(tokens) * math.sqrt(self.d_model))
        # Key j keeps PE(max_len-1-j) in a shorter window too, so a window's outputs depend on its prefix only.
        pos = self.drop(self.positions[:t])
        for layer in self.layers:
            x = layer(x, pos, self.u, self.w)
        return self.head(self.drop(x))

