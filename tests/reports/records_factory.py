"""Hand-made run records, written with engine.record (the trainer's own writer) so the schema is the real one."""

from __future__ import annotations

from pathlib import Path

from engine.record import RunRecord

METRICS = {
    "cifar10_resnet20": ("top1_acc", True), "cifar10_resnet32": ("top1_acc", True),
    "imagenet_resnet18": ("top1_acc", True), "iwslt14": ("bleu", True), "wmt14": ("bleu", True),
    "ptb_transformer": ("test_ppl", False), "criteo_dlrm": ("test_acc", True),
    "wikitext103_transformer": ("test_ppl", False),
}
# The recipe's own values of the swept settings (AdaHessian's block size is 32 on the translation tasks): a value
# given in ``hparams`` that differs from these is a deviation of the record, as the engine would record it.
RECIPE = {"lr_scale": 1.0, "block_size": 1, "update_each": 1}
RECIPE_BLOCK = {"iwslt14": 32, "wmt14": 32}
AUTO = object()


def make_record(results_dir: Path, task: str, optim: str, seed: int, best: float | None = None, *,
                status: str = "completed", scale: str = "paper", data_source: str = "real",
                hparams: dict | None = None, history: list[float] | None = None, key: str | None = None,
                timing: dict | None = None, error: str | None = None, deviations=AUTO,
                config: dict | None = None, **fields) -> Path:
    """A finished (or, with status="running", unfinished) record. ``deviations``: a list (the recipe settings the
    run changed, contract 2), None for a schema-1 record without the field, or by default derived from the swept
    settings given in ``hparams``."""
    name, higher = METRICS.get(task, ("metric", True))
    hp = {"lr": 0.1, "lr_scale": 1.0, "weight_decay": 0.0, "hessian_batch_fraction": 1.0}
    if optim == "adahessian":
        hp.update(block_size=1, update_each=1)
    hp.update(hparams or {})
    if deviations is AUTO:
        recipe = {**RECIPE, "block_size": RECIPE_BLOCK.get(task, 1)}
        deviations = sorted(f"optim.{k}={v}" for k, v in (hparams or {}).items()
                            if k in recipe and float(v) != float(recipe[k]))
    extra = {} if deviations is None else {"deviations": sorted(deviations), "schema": 2}
    rec = RunRecord.create(
        results_dir, task=task, task_family="test", optim=optim, seed=seed, scale=scale, data_source=data_source,
        hparams=hp, metric={"name": name, "higher_is_better": higher},
        key=key or f"{task}-{optim}-{seed}-{scale}-{data_source}-{sorted(hp.items())}",
        timing=timing or {}, device="cpu", config=config or {}, **extra, **fields,
    )
    hist = history if history is not None else ([best] if best is not None else [])
    for i, v in enumerate(hist):
        rec.log_eval({"epoch": i, "step": 10 * (i + 1), name: v})
    if best is not None and status != "diverged":
        rec.data["best_metric"] = best
    if status != "running":
        rec.finish(status, error)
    else:
        rec.save()
    return rec.path
