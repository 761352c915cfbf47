"""DLRM (Naumov et al. 2019) as facebookresearch/dlrm configures it for Criteo Kaggle (bench/dlrm_s_criteo_kaggle.sh).

``--arch-sparse-feature-size=16 --arch-mlp-bot=13-512-256-64-16 --arch-mlp-top=512-256-1``, dot interaction:

* bottom MLP over the 13 dense features: Linear+ReLU layers 13-512-256-64-16 (ReLU after every layer, the last too);
* one embedding table of dimension 16 per categorical feature (26 tables, ``counts[j]`` rows each);
* dot interaction: ``T = [x_bottom, e_1, ..., e_26]`` (27 vectors of 16), all pairwise dot products ``<T_i, T_j>``
  for ``i > j`` (strictly lower triangle, 351 of them, dlrm's default ``interaction_itself=False``), concatenated
  after ``x_bottom``: 16 + 351 = 367 features;
* top MLP 367-512-256-1: ReLU after the hidden layers, a logit at the end (dlrm applies the sigmoid inside the
  MLP and uses BCELoss; here the sigmoid is folded into the loss, ``BCEWithLogits``, the same function computed
  stably).

Initialization as dlrm: Linear weights ~ N(0, sqrt(2 / (fan_in + fan_out))), biases ~ N(0, sqrt(1 / fan_out)),
embedding rows ~ U(-sqrt(1 / rows), sqrt(1 / rows)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mlp(widths: Sequence[int], relu_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        lin = nn.Linear(n_in, n_out)
        with torch.no_grad():
            lin.weight.normal_(0.0, float(np.sqrt(2.0 / (n_in + n_out))))
            lin.bias.normal_(0.0, float(np.sqrt(1.0 / n_out)))
        layers.append(lin)
        if i < len(widths) - 2 or relu_last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def dot_interaction(x: torch.Tensor, embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[x, <T_i, T_j> for i > j]`` with ``T = [x, *embeddings]`` (each (B, d)): shape (B, d + n(n-1)/2)."""
    t = torch.stack([x, *embeddings], dim=1)  # (B, n, d)
    z = torch.bmm(t, t.transpose(1, 2))  # (B, n, n)
    n = t.size(1)
    li, lj = torch.tril_indices(n, n, offset=-1, device=x.device)  # row-major over the strict lower triangle
    return torch.cat([x, z[:, li, lj]], dim=1)


class DLRM(nn.Module):
    """``forward(dense (B, 13) float, sparse (B, 26) long) -> click logits (B,)``."""

    def __init__(self, counts: Sequence[int], embedding_dim: int = 16,
                 bottom_mlp: Sequence[int] = (13, 512, 256, 64, 16), top_mlp: Sequence[int] = (512, 256, 1),
                 sparse_embeddings: bool = True):
        super().__init__()
        bottom_mlp, top_mlp = list(bottom_mlp), list(top_mlp)
        if bottom_mlp[-1] != embedding_dim:
            raise ValueError(f"the bottom MLP must end at embedding_dim={embedding_dim}, got {bottom_mlp}")
        if top_mlp[-1] != 1:
            raise ValueError(f"the top MLP must end in one output (the click logit), got {top_mlp}")
        self.embeddings = nn.ModuleList()
        for rows in counts:
            emb = nn.Embedding(int(rows), embedding_dim, sparse=sparse_embeddings)
            bound = float(np.sqrt(1.0 / rows))
            with torch.no_grad():
                emb.weight.uniform_(-bound, bound)
            self.embeddings.append(emb)
        self.bottom = mlp(bottom_mlp, relu_last=True)
        n = len(counts) + 1
        self.interaction_dim = embedding_dim + n * (n - 1) // 2
        self.top = mlp([self.interaction_dim, *top_mlp], relu_last=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        embedded = [emb(sparse[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.top(dot_interaction(x, embedded)).squeeze(1)

    def param_sets(self) -> dict[str, list[nn.Parameter]]:
        """The MLPs and the embedding tables: the recipe puts them on different optimizers.

        ``dense`` comes first so that the first param group (whose lr the trainer records) is the MLPs'.
        """
        return {"dense": [*self.bottom.parameters(), *self.top.parameters()],
                "embeddings": [e.weight for e in self.embeddings]}


def click_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean binary cross-entropy of the click logits."""
    dense, sparse, label = batch
    return F.binary_cross_entropy_with_logits(model(dense, sparse).float(), label)
