"""Runs in a subprocess of the tests (fairseq registers its configs in Hydra's ConfigStore on import, which must
not leak into the pytest process where the suite's own configs are composed).

``python tests/translation/fairseq_probe.py estimate BIN_DIR`` prints one JSON object per case: the AdaHessian
plugin's Hessian estimate and parameter update inside fairseq's real Trainer.train_step (two micro-batches,
--update-freq 2) against plain PyTorch + optim.AdaHessian on the same model, batches and Rademacher draw.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
PLUGIN = ROOT / "tasks" / "translation" / "adahessian_fairseq"

TINY = ["--arch", "transformer_iwslt_de_en", "--encoder-layers", "1", "--decoder-layers", "1",
        "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
        "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
        "--share-all-embeddings", "--encoder-normalize-before", "--decoder-normalize-before", "--dropout", "0"]
LR, BETAS, EPS, WD, BLOCK, SEED = 0.01, (0.9, 0.98), 1e-4, 1e-4, 4, 3


def build(bin_dir: str, semantics: str, clip: float, save_dir: str):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    argv = [bin_dir, "--user-dir", str(PLUGIN), "--task", "translation_suite", *TINY,
            "--optimizer", "adahessian", "--adahessian-betas", str(BETAS), "--adahessian-eps", str(EPS),
            "--weight-decay", str(WD), "--block-size", str(BLOCK), "--lr", str(LR), "--lr-scheduler", "fixed",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--batch-size", "8",
            "--cpu", "--seed", str(SEED), "--loss-semantics", semantics, "--clip-norm", str(clip),
            "--update-freq", "2", "--save-dir", save_dir]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    torch.manual_seed(SEED)  # the same initial model in every case
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_sentences=8, seed=1).next_epoch_itr(
        shuffle=False)
    batches = [next(itr), next(itr)]
    return trainer, model, criterion, batches


def reference_loss(model, criterion, batches, semantics: str, scale: float = 1.0):
    from optim.attention import hessian_safe_attention

    total, size = 0.0, 0.0
    model.train()
    for b in batches:
        with hessian_safe_attention():
            loss, sample_size, _ = criterion(model, b)
        total = total + loss
        size += float(sample_size)
    return (total / size if semantics == "mean" else total) * scale, size


def case(bin_dir: str, semantics: str, clip: float) -> dict:
    from optim.adahessian import AdaHessian

    with tempfile.TemporaryDirectory() as tmp:
        trainer, model, criterion, batches = build(bin_dir, semantics, clip, tmp)
        model0 = copy.deepcopy(model)
        model0b = copy.deepcopy(model)
        opt = trainer.optimizer
        seen: dict = {}
        draw = opt._draw_z
        opt._draw_z = lambda params: seen.setdefault("z", draw(params))
        give = opt._optimizer.supply_estimate
        opt._optimizer.supply_estimate = lambda est, **kw: (
            seen.setdefault("est", {k: v.clone() for k, v in est.items()}), give(est, **kw))[1]
        trainer.train_step(batches)
        params = [p for p in model.parameters() if p.requires_grad]
        plugin_d = [seen["est"][id(p)] for p in params]

    # Plain PyTorch on the same model and batches, the same z.
    p0 = [p for p in model0.parameters() if p.requires_grad]
    loss, size = reference_loss(model0, criterion, batches, semantics)
    g = torch.autograd.grad(loss, p0, create_graph=True)
    gnorm = torch.sqrt(sum((x.detach() ** 2).sum() for x in g)).item()
    coef = min(1.0, clip / (gnorm + 1e-6)) if (clip > 0 and semantics == "mean") else 1.0
    hz = torch.autograd.grad(g, p0, grad_outputs=seen["z"][0])
    ref_d = [(z * h).abs() * coef for z, h in zip(seen["z"][0], hz)]
    # Relative to the largest entry: k_proj.bias has a (theoretically) zero Hessian, its entries are noise.
    d_scale = max(b.abs().max().item() for b in ref_d)
    d_err = max((a - b).abs().max().item() for a, b in zip(plugin_d, ref_d)) / d_scale

    # The whole step: optim.AdaHessian on the loss the semantics names (clipping = scaling that loss).
    pb = [p for p in model0b.parameters() if p.requires_grad]
    ref_opt = AdaHessian(pb, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, block_size=BLOCK, seed=SEED)
    loss_b, _ = reference_loss(model0b, criterion, batches, semantics, scale=coef)
    loss_b.backward(create_graph=True)
    ref_opt.step()
    # Per tensor, relative to the size of its step: coordinates whose |D| is near eps take steps up to
    # lr * g / eps, where float32 round-off in D is amplified (a LayerNorm weight here moves ~1.4 at lr 0.01).
    # k_proj.bias has a (theoretically) zero gradient and Hessian: its step is round-off over round-off + eps.
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    step_err = max((a.detach() - b.detach()).abs().max().item() / max((b.detach() - c.detach()).abs().max().item(),
                                                                       1e-12)
                   for n, a, b, c in zip(names, params, pb, p0) if not n.endswith("k_proj.bias"))
    moved = max((a.detach() - b.detach()).abs().max().item() for a, b in zip(params, p0))
    return {"semantics": semantics, "clip": clip, "clip_coef": coef, "sample_size": size, "d_rel_err": d_err,
            "step_rel_err": step_err, "param_change": moved, "d_max": max(d.abs().max().item() for d in ref_d),
            "n_params": len(params)}


def main() -> None:
    if sys.argv[1] == "estimate":
        bin_dir = sys.argv[2]
        # Clipping active in both cases (the gradient norm of the tiny model is ~1): the mean-loss case checks
        # sample-size normalisation and clipping together, the authors' case that neither reaches the update.
        out = [case(bin_dir, "mean", 0.05), case(bin_dir, "authors", 0.05)]
        print("PROBE " + json.dumps(out))
    else:
        raise SystemExit(f"unknown probe {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
