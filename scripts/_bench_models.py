"""Models for scripts/bench_optim.py, self-contained (the suite's task models live in tasks/, which the benchmark
does not import so that it measures the optimizers alone).

- ``resnet20``: He et al.'s CIFAR ResNet20 (3 stages of 3 BasicBlocks, 16/32/64 channels, 1x1 conv + BN
  projection shortcut where the shape changes), 0.27 M parameters, 32x32 inputs.
- ``transformer``: a small causal LM on ``nn.TransformerEncoder`` (pre-norm, 2 layers, d_model 128, 4 heads,
  FFN 512, vocabulary 2000, context 64). The benchmark runs its attention through the math backend on every step
  and for every optimizer (``optim.hessian_safe_attention``), so all of them pay the same attention cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10, blocks: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, c_in = [], 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks):
                layers.append(BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 2000, d_model: int = 128, heads: int = 4, ffn: int = 512, layers: int = 2,
                 context: int = 64) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(context, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device)
        h = self.encoder(self.embed(tokens) + self.pos[:n], mask=mask, is_causal=True)
        return self.head(self.norm(h))


def make(name: str, batch: int, device: torch.device, seed: int = 0):
    """(model, inputs, loss_fn) with ``loss_fn(model, inputs, n)`` the mean loss on the first ``n`` samples."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if name == "resnet20":
        model = ResNet20().to(device)
        x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)

        def loss_fn(m: nn.Module, n: int) -> torch.Tensor:
            return F.cross_entropy(m(x[:n]), y[:n])

        return model, loss_fn
    if name == "transformer":
        model = TinyLM().to(device)
        tokens = torch.randint(0, model.vocab, (batch, 65), generator=g).to(device)

        def loss_fn(m: nn.Module, n: int) -> torch.Tensor:
            logits = m(tokens[:n, :-1])
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:n, 1:].reshape(-1))

        return model, loss_fn
    raise ValueError(f"unknown model {name!r}; choose resnet20 or transformer")
