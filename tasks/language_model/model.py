"""A standard pre-norm transformer language model (decoder-only, causal self-attention), ``task.model.arch: standard``.

The paper's LM is the tensorized transformer of Ma et al. (2019) (tensorized.py, the default); this plain transformer
LM is the named alternative: token embedding scaled by sqrt(d_model) plus sinusoidal positions, blocks
``x + Dropout(Attn(LN(x)))`` and ``x + Dropout(FFN(LN(x)))``, a final LayerNorm and an output layer tied to the
input embedding.

Attention is ``F.scaled_dot_product_attention``. With ``attention="math"`` (the default) it runs through the math
backend in every training forward: AdaHessian differentiates the gradient a second time, and the fused kernels
(flash / memory-efficient, on CPU and CUDA) have no double backward. Using the same kernel for every optimizer also
keeps their comparison fair; ``attention="auto"`` lets torch choose (first-order optimizers only). Evaluation
always lets torch choose.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from optim import hessian_safe_attention

ATTENTION = ("math", "auto")


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, attention_dropout: float, attention: str):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        if attention not in ATTENTION:
            raise ValueError(f"task.model.attention={attention!r} is not allowed; choose one of {', '.join(ATTENTION)}")
        self.n_heads, self.attention_dropout, self.attention = n_heads, attention_dropout, attention
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        safe = hessian_safe_attention() if (self.training and self.attention == "math") else nullcontext()
        with safe:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.attention_dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float,
                 attention: str):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, attention_dropout, attention)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.ff(self.ln2(x)))


class TransformerLM(nn.Module):
    """``forward(tokens (B, T)) -> logits (B, T, vocab)``."""

    def __init__(self, vocab_size: int, n_layers: int = 3, d_model: int = 512, n_heads: int = 8, d_ff: int = 2048,
                 dropout: float = 0.3, attention_dropout: float = 0.0, max_len: int = 512,
                 tie_embeddings: bool = True, attention: str = "math"):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout, attention_dropout, attention)
                                    for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        if tie_embeddings:
            self.head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # fairseq's convention: N(0, d^-1/2), scaled by sqrt(d) on input, so both ends see unit-scale vectors.
        nn.init.normal_(self.embed.weight, std=self.d_model ** -0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.size(1)
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={self.max_len}")
        x = self.drop(self.embed(tokens) * math.sqrt(self.d_model) + self.positions[:t])
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def lm_loss(model: nn.Module, batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over every position of the batch, label-smoothed when asked.

    With smoothing ``eps`` each token's loss is ``(1 - eps) * NLL + eps * mean over the vocabulary of -log p`` (torch's
    ``label_smoothing``, the same as fairseq's ``label_smoothed_cross_entropy``). Only training uses it: perplexity is
    always from the unsmoothed loss (metric.py).
    """
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                           label_smoothing=label_smoothing)
