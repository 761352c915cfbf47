"""DLRM: the dot interaction by hand, the Kaggle architecture's shapes, the exact parameter split, sparse tables."""

import numpy as np
import pytest
import torch
from helpers import compose_cfg
from torch import nn

from tasks.recommendation import use_sparse_embeddings
from tasks.recommendation.model import DLRM, click_loss, dot_interaction

KAGGLE_DIMS = dict(embedding_dim=16, bottom_mlp=[13, 512, 256, 64, 16], top_mlp=[512, 256, 1])


def test_dot_interaction_by_hand():
    x = torch.tensor([[1.0, 2.0]])
    e1, e2 = torch.tensor([[3.0, 4.0]]), torch.tensor([[5.0, 6.0]])
    # T = [x, e1, e2]; pairs (1,0), (2,0), (2,1): <e1,x> = 11, <e2,x> = 17, <e2,e1> = 39; x first, as dlrm
    assert dot_interaction(x, [e1, e2]).tolist() == [[1.0, 2.0, 11.0, 17.0, 39.0]]
    # batched, and no self-products
    xb, eb = torch.randn(4, 3), [torch.randn(4, 3) for _ in range(3)]
    out = dot_interaction(xb, eb)
    t = [xb, *eb]
    expected = torch.stack([(t[i] * t[j]).sum(1) for i in range(4) for j in range(i)], dim=1)
    torch.testing.assert_close(out, torch.cat([xb, expected], dim=1))


def test_kaggle_architecture_shapes():
    torch.manual_seed(0)
    counts = [3, 5, 7] * 8 + [2, 4]  # 26 small tables
    model = DLRM(counts, **KAGGLE_DIMS)
    assert model.interaction_dim == 16 + 27 * 26 // 2 == 367
    bottom = [m for m in model.bottom if isinstance(m, nn.Linear)]
    top = [m for m in model.top if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in bottom] == [(13, 512), (512, 256), (256, 64), (64, 16)]
    assert [(m.in_features, m.out_features) for m in top] == [(367, 512), (512, 256), (256, 1)]
    assert isinstance(model.bottom[-1], nn.ReLU) and isinstance(model.top[-1], nn.Linear)  # dlrm: ReLU ends bottom
    assert [e.weight.shape for e in model.embeddings] == [(c, 16) for c in counts]
    for e, c in zip(model.embeddings, counts):  # dlrm's init: U(-sqrt(1/n), sqrt(1/n))
        assert e.weight.abs().max() <= np.sqrt(1 / c)
    dense, sparse = torch.rand(5, 13), torch.stack([torch.randint(0, c, (5,)) for c in counts], dim=1)
    assert model(dense, sparse).shape == (5,)


def test_forward_is_bottom_then_interaction_then_top_on_a_tiny_model():
    torch.manual_seed(0)
    model = DLRM([3, 4], embedding_dim=2, bottom_mlp=[13, 2], top_mlp=[1], sparse_embeddings=False)
    (bw, bb), (tw, tb) = [(m.weight, m.bias) for m in (model.bottom[0], model.top[0])]
    dense, sparse = torch.rand(2, 13), torch.tensor([[2, 0], [1, 3]])
    with torch.no_grad():
        x = torch.relu(dense @ bw.T + bb)  # (2, 2)
        e1, e2 = model.embeddings[0].weight[sparse[:, 0]], model.embeddings[1].weight[sparse[:, 1]]
        feats = torch.stack([x[:, 0], x[:, 1], (e1 * x).sum(1), (e2 * x).sum(1), (e2 * e1).sum(1)], dim=1)
        expected = (feats @ tw.T + tb).squeeze(1)
        torch.testing.assert_close(model(dense, sparse), expected)
        label = torch.tensor([1.0, 0.0])
        p = torch.sigmoid(expected)
        bce = -(label * torch.log(p) + (1 - label) * torch.log(1 - p)).mean()
        torch.testing.assert_close(click_loss(model, (dense, sparse, label)), bce)


def test_param_sets_split_exactly_embeddings_and_mlps():
    model = DLRM([3, 5] * 13, **KAGGLE_DIMS)
    sets = model.param_sets()
    assert list(sets) == ["dense", "embeddings"]
    emb = {id(e.weight) for e in model.embeddings}
    mlp = {id(p) for p in [*model.bottom.parameters(), *model.top.parameters()]}
    assert {id(p) for p in sets["embeddings"]} == emb and len(sets["embeddings"]) == 26
    assert {id(p) for p in sets["dense"]} == mlp and len(sets["dense"]) == 2 * (4 + 3)
    assert emb.isdisjoint(mlp) and emb | mlp == {id(p) for p in model.parameters()}


def test_sparse_tables_exactly_when_adagrad_updates_them():
    def optim(name, extra=()):
        return compose_cfg(["task=criteo_dlrm", f"optim={name}", *extra]).optim

    assert use_sparse_embeddings("auto", optim("adagrad")) is True
    assert use_sparse_embeddings("auto", optim("adahessian")) is True  # per_set: tables on Adagrad
    assert use_sparse_embeddings("auto", optim("adahessian", ["~optim.per_set"])) is False
    assert use_sparse_embeddings("auto", optim("adam")) is False
    assert use_sparse_embeddings(False, optim("adagrad")) is False
    with pytest.raises(ValueError, match="sparse_embeddings='yes'"):
        use_sparse_embeddings("yes", optim("adagrad"))
    model = DLRM([3] * 26, **KAGGLE_DIMS, sparse_embeddings=True)
    batch = (torch.rand(4, 13), torch.randint(0, 3, (4, 26)), torch.ones(4))
    click_loss(model, batch).backward()
    assert model.embeddings[0].weight.grad.is_sparse and not model.top[0].weight.grad.is_sparse
