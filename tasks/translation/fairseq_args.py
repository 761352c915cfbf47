"""From the suite's Hydra config to fairseq command lines (pure functions: no fairseq import, no side effects).

Mapping of the shared trainer profile (conf/trainer/*.yaml) onto fairseq:

| trainer key             | fairseq                                                                     |
|-------------------------|-----------------------------------------------------------------------------|
| epochs                  | ``--max-epoch``                                                             |
| max_steps               | ``--max-update``                                                            |
| limit_train_batches = L | ``--max-update epochs*L`` (or max_steps if smaller), validation and a       |
|                         | checkpoint every L updates (``--validate/save-interval-updates``): an       |
|                         | "epoch" of L batches, as the torch trainer; fairseq epochs are not truncated|
| limit_val_batches       | ``--max-valid-steps``                                                       |
| eval_every              | refused (fairseq validates at its epoch ends; limit_train_batches gives an  |
|                         | evaluation every L updates)                                                 |
| batch_size              | ``--max-tokens`` (task.batch_unit tokens) or ``--batch-size`` (sentences)   |
| grad_clip               | ``--clip-norm``                                                             |
| precision               | fp32; ``bf16`` -> ``--bf16``; ``fp16`` -> ``--fp16`` (not for AdaHessian)   |
| hessian_batch_fraction  | must be 1 (the sub-batch estimate is not implemented for fairseq)           |
| num_workers, log_every  | ``--num-workers``, ``--log-interval``                                       |
| device                  | ``cpu`` -> ``--cpu``; ``cuda:N`` -> CUDA_VISIBLE_DEVICES=N                    |

The optimizer config (conf/optim/*.yaml) maps to fairseq's optimizers with lr = ``optim.lr * optim.lr_scale``
through :data:`FAIRSEQ_OPTIMIZERS`, one row per registered optimizer (``optim.OPTIMIZERS``; a test checks that
every registered name has a row): adahessian -> this plugin's ``adahessian``; sophiah -> the plugin's ``sophiah``;
adamw -> fairseq's ``adam`` (decoupled weight decay, as torch.optim.AdamW); adam -> the plugin's ``torch_adam``
(coupled L2); sgd -> ``sgd``; adagrad -> ``adagrad``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLUGIN_DIR = Path(__file__).resolve().parent / "adahessian_fairseq"
FAIRSEQ_TASK = "translation_suite"
DROPOUT_PRESETS_KEY = "dropout_presets"


class TranslationConfigError(ValueError):
    """A configuration this task cannot run; the message names the key and what is allowed."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def effective_task(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg['task']`` with ``task.profiles[<trainer name>]`` merged in (e.g. the smoke profile's tiny model)."""
    task = {k: v for k, v in cfg["task"].items() if k != "profiles"}
    profile = (cfg["task"].get("profiles") or {}).get(cfg["trainer"]["name"])
    return _merge(task, profile) if profile else task


def _num(x: float | int) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def dict_args(d: dict[str, Any]) -> list[str]:
    """``{encoder_layers: 2, share_all_embeddings: true}`` -> ``--encoder-layers 2 --share-all-embeddings``."""
    out: list[str] = []
    for k, v in d.items():
        if v is None or v is False:
            continue
        if v is True:
            out.append(_flag(k))
        elif isinstance(v, (list, tuple)):
            out += [_flag(k), "(" + ", ".join(_num(x) for x in v) + ")"]
        else:
            out += [_flag(k), _num(v) if isinstance(v, (int, float)) else str(v)]
    return out


def effective_lr(optim: dict[str, Any]) -> float:
    return float(optim["lr"]) * float(optim.get("lr_scale", 1.0))


def _betas(optim: dict[str, Any]) -> str:
    b1, b2 = optim.get("betas", (0.9, 0.999))
    return f"({_num(float(b1))}, {_num(float(b2))})"


@dataclass(frozen=True)
class Arg:
    """One optimizer config key -> one fairseq flag. kind: float, int, betas, or ``off_flag`` (the bare flag
    when the value is false)."""

    key: str
    flag: str
    kind: str
    default: Any


@dataclass(frozen=True)
class FairseqOptimizerSpec:
    fairseq_name: str  # --optimizer
    args: tuple[Arg, ...]
    # Second-order optimizers (fp32 only) get --loss-semantics: "task" = task.hessian_semantics (AdaHessian: the
    # authors' fork is a setting of AdaHessian's recipe), or a fixed value; None for first-order optimizers.
    semantics: str | None = None
    refused: tuple[tuple[str, str], ...] = ()  # (key, message) refused when the key's value is true


_HESSIAN_ARGS = (Arg("weight_decay", "--weight-decay", "float", 0.0),
                 Arg("update_each", "--update-each", "int", 1),
                 Arg("hessian_warmup_steps", "--hessian-warmup-steps", "int", 0),
                 Arg("n_samples", "--n-samples", "int", 1))

# The one table of fairseq optimizers, keyed by the registry's names (optim.OPTIMIZERS).
FAIRSEQ_OPTIMIZERS: dict[str, FairseqOptimizerSpec] = {
    "adahessian": FairseqOptimizerSpec("adahessian", (
        Arg("betas", "--adahessian-betas", "betas", (0.9, 0.999)), Arg("eps", "--adahessian-eps", "float", 1e-4),
        Arg("weight_decay", "--weight-decay", "float", 0.0), Arg("block_size", "--block-size", "int", 1),
        Arg("hessian_power", "--hessian-power", "float", 1.0), Arg("update_each", "--update-each", "int", 1),
        Arg("hessian_warmup_steps", "--hessian-warmup-steps", "int", 0), Arg("n_samples", "--n-samples", "int", 1),
        Arg("average_conv_kernel", "--no-average-conv-kernel", "off_flag", True)), semantics="task"),
    "sophiah": FairseqOptimizerSpec("sophiah", (
        Arg("betas", "--sophiah-betas", "betas", (0.96, 0.99)), Arg("gamma", "--sophiah-gamma", "float", 0.01),
        # Sophia estimates the Hessian of the minibatch's mean loss (paper, Algorithm 1), whatever AdaHessian's
        # recipe for this task says.
        Arg("eps", "--sophiah-eps", "float", 1e-12), *_HESSIAN_ARGS), semantics="mean"),
    "adamw": FairseqOptimizerSpec("adam", (
        Arg("betas", "--adam-betas", "betas", (0.9, 0.999)), Arg("eps", "--adam-eps", "float", 1e-8),
        Arg("weight_decay", "--weight-decay", "float", 0.0))),
    "adam": FairseqOptimizerSpec("torch_adam", (
        Arg("betas", "--adam-betas", "betas", (0.9, 0.999)), Arg("eps", "--adam-eps", "float", 1e-8),
        Arg("weight_decay", "--weight-decay", "float", 0.0))),
    "sgd": FairseqOptimizerSpec("sgd", (
        Arg("momentum", "--momentum", "float", 0.0), Arg("weight_decay", "--weight-decay", "float", 0.0)),
        refused=(("nesterov", "optim.nesterov=true is not available in fairseq's sgd; use false"),)),
    "adagrad": FairseqOptimizerSpec("adagrad", (Arg("weight_decay", "--weight-decay", "float", 0.0),)),
}


def _arg(optim: dict[str, Any], a: Arg) -> list[str]:
    value = optim.get(a.key, a.default)
    if a.kind == "betas":
        return [a.flag, _betas({"betas": value})]
    if a.kind == "float":
        return [a.flag, _num(float(value))]
    if a.kind == "int":
        return [a.flag, str(int(value))]
    if a.kind == "off_flag":
        return [] if value else [a.flag]
    raise ValueError(f"unknown argument kind {a.kind!r}")


def is_second_order(name: str) -> bool:
    spec = FAIRSEQ_OPTIMIZERS.get(name)
    return bool(spec and spec.semantics)


def loss_semantics(name: str, task: dict[str, Any]) -> str | None:
    """The plugin's ``--loss-semantics`` for optimizer ``name`` on ``task`` (None: a first-order optimizer)."""
    spec = FAIRSEQ_OPTIMIZERS.get(name)
    if spec is None or spec.semantics is None:
        return None
    semantics = task.get("hessian_semantics", "mean") if spec.semantics == "task" else spec.semantics
    if semantics not in ("mean", "authors"):
        raise TranslationConfigError(f"task.hessian_semantics={semantics!r} is not allowed; choose mean or authors")
    return semantics


def optimizer_args(optim: dict[str, Any], task: dict[str, Any]) -> list[str]:
    name = optim["name"]
    spec = FAIRSEQ_OPTIMIZERS.get(name)
    if spec is None:
        raise TranslationConfigError(
            f"optim={name!r} has no fairseq mapping; choose one of {', '.join(FAIRSEQ_OPTIMIZERS)}")
    for key, message in spec.refused:
        if optim.get(key):
            raise TranslationConfigError(message)
    args = ["--optimizer", spec.fairseq_name]
    for a in spec.args:
        args += _arg(optim, a)
    semantics = loss_semantics(name, task)
    if semantics is not None:
        args += ["--loss-semantics", semantics]
    return args + ["--lr", _num(effective_lr(optim))]


def schedule_args(task: dict[str, Any], lr: float) -> list[str]:
    s = task.get("schedule") or {"name": "inverse_sqrt", "warmup_updates": 4000}
    if s["name"] == "inverse_sqrt":
        init = float(s.get("warmup_init_lr_ratio", 0.0)) * lr
        return ["--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(int(s["warmup_updates"])),
                "--warmup-init-lr", _num(init)]
    if s["name"] == "fixed":
        return ["--lr-scheduler", "fixed"]
    raise TranslationConfigError(f"task.schedule.name={s['name']!r} is not allowed; choose inverse_sqrt or fixed")


def model_args(task: dict[str, Any]) -> list[str]:
    m = task["model"]
    args = ["--arch", m["arch"]]
    if m.get("share_all_embeddings"):
        args.append("--share-all-embeddings")
    elif m.get("share_decoder_input_output_embed"):
        args.append("--share-decoder-input-output-embed")
    if m.get("normalize_before"):
        args += ["--encoder-normalize-before", "--decoder-normalize-before"]
    preset = m.get("dropout_preset")
    presets = m.get(DROPOUT_PRESETS_KEY) or {}
    if preset is not None:
        if preset not in presets:
            raise TranslationConfigError(
                f"task.model.dropout_preset={preset!r} is not allowed; choose one of {', '.join(presets)}")
        args += dict_args(presets[preset])
    return args + dict_args(m.get("args") or {})


@dataclass
class Devices:
    cpu: bool
    world_size: int
    env: dict[str, str] = field(default_factory=dict)
    name: str = "cpu"


def _workers(value: Any) -> int:
    """trainer.num_workers for fairseq: a number, or ``auto`` (launch resolves it first; a plan built directly
    from a composed config resolves it here, by the same rule)."""
    if value == "auto":
        from engine.resources import auto_workers

        return auto_workers()
    return int(value or 0)


def resolve_devices(trainer: dict[str, Any], task: dict[str, Any], cuda_count: int) -> Devices:
    spec = str(trainer.get("device", "auto"))
    if spec == "cpu" or (spec == "auto" and cuda_count == 0):
        return Devices(cpu=True, world_size=1)
    if spec.startswith("cuda"):
        if cuda_count == 0:
            raise TranslationConfigError(f"trainer.device={spec!r} but CUDA is not available here; use auto or cpu")
        if ":" in spec:
            return Devices(cpu=False, world_size=1, env={"CUDA_VISIBLE_DEVICES": spec.split(":", 1)[1]}, name=spec)
    elif spec != "auto":
        raise TranslationConfigError(f"trainer.device={spec!r} is not allowed; use auto, cpu, cuda or cuda:N")
    max_gpus = task.get("max_gpus")
    world = min(cuda_count, int(max_gpus)) if max_gpus else cuda_count
    return Devices(cpu=False, world_size=max(1, world), name="cuda")


def update_freq(task: dict[str, Any], world_size: int) -> int:
    """Gradient accumulation: explicit task.update_freq, else enough to match the paper's GPU count."""
    if task.get("update_freq"):
        return int(task["update_freq"])
    return max(1, math.ceil(int(task.get("paper_gpus", 1)) / world_size))


@dataclass
class TrainPlan:
    argv: list[str]
    env: dict[str, str]
    devices: Devices
    interval_updates: int | None    # validate + save every N updates (limit_train_batches), else per epoch
    max_update: int | None
    update_freq: int
    average_last: int
    task: dict[str, Any]


def train_plan(cfg: dict[str, Any], data_dir: Path | str, save_dir: Path | str, step_log: Path | str,
               cuda_count: int) -> TrainPlan:
    """The ``fairseq-train`` argument list (without the program) for this config."""
    task = effective_task(cfg)
    trainer, optim = cfg["trainer"], cfg["optim"]
    if float(trainer.get("hessian_batch_fraction", 1.0)) != 1.0:
        raise TranslationConfigError("trainer.hessian_batch_fraction must be 1.0 for translation (fairseq "
                                     "draws the estimate on the whole update)")
    if trainer.get("eval_every"):
        raise TranslationConfigError(f"trainer.eval_every={trainer['eval_every']!r} is not allowed for translation; "
                                     "use null (fairseq validates at each epoch's end; trainer.limit_train_batches=L "
                                     "validates every L updates)")
    precision = trainer.get("precision", "fp32")
    if precision not in ("fp32", "bf16", "fp16"):
        raise TranslationConfigError(f"trainer.precision={precision!r} is not allowed; choose fp32, bf16 or fp16")
    if precision != "fp32" and is_second_order(optim["name"]):
        raise TranslationConfigError(f"trainer.precision must be fp32 with optim={optim['name']} (fairseq's mixed "
                                     "precision wrappers call loss.backward themselves)")
    devices = resolve_devices(trainer, task, cuda_count)
    if precision == "fp16" and devices.cpu:
        raise TranslationConfigError("trainer.precision=fp16 needs CUDA; on CPU use fp32 or bf16")

    argv = [str(data_dir), "--user-dir", str(PLUGIN_DIR), "--task", FAIRSEQ_TASK,
            "--source-lang", task["src"], "--target-lang", task["tgt"], "--step-log", str(step_log),
            "--seed", str(int(cfg.get("seed", 0)))]
    argv += model_args(task)
    crit = task.get("criterion") or {"name": "label_smoothed_cross_entropy", "label_smoothing": 0.1}
    argv += ["--criterion", crit["name"]]
    if "label_smoothing" in crit:
        argv += ["--label-smoothing", _num(float(crit["label_smoothing"]))]
    argv += optimizer_args(optim, task)
    argv += schedule_args(task, effective_lr(optim))

    unit = task.get("batch_unit", "tokens")
    if unit == "tokens":
        argv += ["--max-tokens", str(int(trainer["batch_size"]))]
    elif unit == "sentences":
        argv += ["--batch-size", str(int(trainer["batch_size"]))]
    else:
        raise TranslationConfigError(f"task.batch_unit={unit!r} is not allowed; choose tokens or sentences")
    uf = update_freq(task, devices.world_size)
    argv += ["--update-freq", str(uf)]

    epochs = int(trainer["epochs"])
    argv += ["--max-epoch", str(epochs)]
    max_update = int(trainer["max_steps"]) if trainer.get("max_steps") else None
    interval = None
    limit = trainer.get("limit_train_batches")
    if limit:
        interval = int(limit)
        cap = epochs * interval
        max_update = min(max_update, cap) if max_update else cap
        # Stopped before the first interval, fairseq would save only checkpoint_last/best and leave nothing to
        # average: validate and save at the stop instead.
        interval = min(interval, max_update)
        argv += ["--validate-interval-updates", str(interval), "--save-interval-updates", str(interval)]
    if max_update:
        argv += ["--max-update", str(max_update)]
        if interval is None:  # a run stopped by max_steps mid-epoch still saves its final state for averaging
            argv += ["--save-interval-updates", str(max_update)]
    if trainer.get("limit_val_batches"):
        argv += ["--max-valid-steps", str(int(trainer["limit_val_batches"]))]
    if task.get("early_stop_patience"):
        argv += ["--patience", str(int(task["early_stop_patience"]))]

    average_last = int(task.get("average_last", 1))
    argv += ["--keep-last-epochs", str(average_last), "--keep-interval-updates", str(average_last),
             "--save-dir", str(save_dir), "--clip-norm", _num(float(trainer.get("grad_clip", 0.0))),
             "--num-workers", str(_workers(trainer.get("num_workers", 1))),
             "--log-format", "json", "--log-interval", str(int(trainer.get("log_every", 50))),
             "--distributed-world-size", str(devices.world_size)]
    if devices.world_size > 1:
        argv += ["--ddp-backend", "legacy_ddp"]
    if devices.cpu:
        argv.append("--cpu")
    if precision == "bf16":
        argv.append("--bf16")
    elif precision == "fp16":
        argv.append("--fp16")
    argv += dict_args(task.get("fairseq_args") or {})
    return TrainPlan(argv=argv, env=dict(devices.env), devices=devices, interval_updates=interval,
                     max_update=max_update, update_freq=uf, average_last=average_last, task=task)


def generate_argv(task: dict[str, Any], data_dir: Path | str, checkpoint: Path | str, cpu: bool) -> list[str]:
    g = task.get("generate") or {}
    argv = [str(data_dir), "--user-dir", str(PLUGIN_DIR), "--task", "translation",
            "--source-lang", task["src"], "--target-lang", task["tgt"], "--path", str(checkpoint),
            "--gen-subset", str(g.get("subset", "test")), "--beam", str(int(g.get("beam", 5))),
            "--lenpen", _num(float(g.get("lenpen", 1.0))), "--batch-size", str(int(g.get("batch_size", 128))),
            # fairseq drops a trailing partial batch unless the multiple is 1
            "--required-batch-size-multiple", "1", "--remove-bpe", "--scoring", "bleu",
            "--log-format", "simple", "--no-progress-bar"]
    argv += dict_args(g.get("args") or {})  # e.g. {max_len_b: 10} for smoke runs of untrained models
    if cpu:
        argv.append("--cpu")
    return argv
