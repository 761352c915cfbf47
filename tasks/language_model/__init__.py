"""Word-level language modelling, the paper's Table 4: Penn Treebank and Wikitext-103 with the tensorized transformer
of Ma et al. (2019) (``task.model.arch: tensorized``, tensorized.py) or a standard transformer (``standard``, model.py).

The training loss is label-smoothed by ``task.label_smoothing`` (App. D(c)); perplexities are from the unsmoothed loss.

Metric: test perplexity of the best-validation model (``test_ppl`` selected by ``val_ppl``); every evaluation
computes both. ``task.profiles.<trainer name>.model`` is merged into ``task.model`` (``trainer=smoke``: a tiny model).
See docs/tasks_lm_dlrm.md.
"""

from __future__ import annotations

from functools import partial

from omegaconf import DictConfig, OmegaConf

from engine.task_api import MetricSpec, TorchTask
from engine.trainer import fit

from .data import LMWindows, check_ptb, load_ptb, synthetic_splits
from .metric import LMEvaluator
from .model import TransformerLM, lm_loss
from .tensorized import TensorizedTransformerLM
from .wikitext import check_wikitext103, load_wikitext103

PROFILE_KEYS = ("model",)
ARCHS = ("tensorized", "standard")
LOADERS = {"ptb": load_ptb, "wikitext103": load_wikitext103}  # task.dataset -> reader of data.root


def effective_task(cfg) -> DictConfig:
    """``cfg.task`` with ``task.profiles[<trainer name>]`` merged in (and ``profiles`` dropped).

    A profile may set only the model (:data:`PROFILE_KEYS`): everything else stays overridable on the command line
    as usual (and the trainer reads ``task.schedule``, ``task.epochs``, ``task.batch_size`` from the composed config,
    so a profile could not change those anyway).
    """
    task = OmegaConf.to_container(cfg.task, resolve=True)
    profile = (task.pop("profiles", None) or {}).get(cfg.trainer.name) or {}
    unknown = sorted(set(profile) - set(PROFILE_KEYS))
    if unknown:
        raise ValueError(f"task.profiles.{cfg.trainer.name} sets {unknown}; a profile may set only "
                         f"{', '.join(PROFILE_KEYS)} (override the others on the command line)")
    return OmegaConf.merge(OmegaConf.create(task), OmegaConf.create(profile))


def build_model(task_cfg, vocab_size: int) -> TensorizedTransformerLM | TransformerLM:
    """``task.model.arch``'s model; the shared sizes at ``task.model``, each architecture's own under its name."""
    m = task_cfg.model
    if m.arch not in ARCHS:
        raise ValueError(f"task.model.arch={m.arch!r} is not allowed; choose one of {', '.join(ARCHS)}")
    common = dict(n_layers=m.n_layers, d_model=m.d_model, d_ff=m.d_ff, dropout=m.dropout,
                  max_len=max(task_cfg.bptt, 1), tie_embeddings=m.tie_embeddings)
    if m.arch == "tensorized":
        t = m.tensorized
        return TensorizedTransformerLM(vocab_size, d_head=t.d_head, n_cores=t.n_cores, **common)
    s = m.standard
    return TransformerLM(vocab_size, n_heads=s.n_heads, attention_dropout=s.attention_dropout,
                         attention=s.attention, **common)


def load_splits(cfg):
    """(vocab size, {"train", "valid", "test": 1-D token ids}, description) of the configured source."""
    if cfg.data.source == "synthetic":
        source, ids = synthetic_splits(cfg.data.synthetic)
        return source.vocab_size, ids, {"source": "synthetic", "vocab_size": source.vocab_size}
    dataset = cfg.task.dataset
    if dataset not in LOADERS:
        raise ValueError(f"task.dataset={dataset!r} has no reader; choose one of {', '.join(LOADERS)}")
    vocab, ids = LOADERS[dataset](cfg.data.root)
    return len(vocab), ids, {"source": "real", "root": str(cfg.data.root), "vocab_size": len(vocab)}


def check_data(cfg) -> None:
    """Before a run record exists: the corpus files are present, not empty and UTF-8, or one line naming the file
    (FileNotFoundError / ValueError). Synthetic data needs nothing."""
    if cfg.data.source == "synthetic":
        return
    dataset = cfg.task.get("dataset", "ptb")
    if dataset == "ptb":
        check_ptb(cfg.data.root)
    elif dataset == "wikitext103":
        check_wikitext103(cfg.data.root)


def build_with_info(cfg) -> tuple[TorchTask, dict]:
    """The task and a description of what was built (for the run record's ``extra``)."""
    task_cfg = effective_task(cfg)
    vocab_size, ids, info = load_splits(cfg)
    bptt, batch = task_cfg.bptt, cfg.trainer.batch_size
    train = LMWindows(ids["train"], batch, bptt)
    val = LMWindows(ids["valid"], task_cfg.eval_batch_size, bptt)
    test = LMWindows(ids["test"], task_cfg.eval_batch_size, bptt)
    model = build_model(task_cfg, vocab_size)
    task = TorchTask(
        model=model,
        train_loader=train,
        val_loader=val,
        loss=partial(lm_loss, label_smoothing=float(task_cfg.label_smoothing)),
        evaluate=LMEvaluator(test),
        metric=MetricSpec(task_cfg.metric.name, task_cfg.metric.higher_is_better),
        # Throughput counts tokens; a Hessian sub-batch keeps whole streams (at least one).
        batch_size_of=lambda b: b[0].numel(),
        head_of_batch=lambda b, n: tuple(t[: max(1, n // b[0].size(1))] for t in b),
    )
    info = {**info, "model": OmegaConf.to_container(task_cfg.model), "bptt": bptt,
            "label_smoothing": float(task_cfg.label_smoothing),
                 "n_params": sum(p.numel() for p in model.parameters()),
                 "tokens": {k: int(v.numel()) for k, v in ids.items()}, "train_batches": len(train)}
    return task, info


def build(cfg) -> TorchTask:
    return build_with_info(cfg)[0]


def train(cfg, run) -> None:
    task, info = build_with_info(cfg)
    run.update(extra={"language_model": info})
    fit(cfg, run, task)
