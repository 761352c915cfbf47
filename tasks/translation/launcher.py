"""``train(cfg, run)`` for the translation family: fairseq does the training, this module drives it.

Steps (each fairseq program runs as a subprocess, so fairseq's own Hydra ConfigStore never meets the suite's):

1. data: ``data.source=real`` uses the binarized directory ``data.root`` (scripts/prepare_iwslt14.sh,
   scripts/prepare_wmt14.sh); ``synthetic`` writes a small learnable corpus into the run directory and
   binarizes it with ``fairseq-preprocess --joined-dictionary``;
2. ``fairseq-train`` with the plugin in ``adahessian_fairseq`` (``--user-dir``), its JSON log parsed live:
   every validation becomes a record row (epoch, step, train_loss, val_loss, lr, time_s), training points go
   to W&B, a non-finite loss stops the run as ``diverged``;
3. the last ``task.average_last`` checkpoints averaged, ``fairseq-generate`` with the paper's beam and length
   penalty on the test split, BLEU scored as the paper did (tokenized) and by sacreBLEU; the result is the
   record's last row (``bleu``), so best/final metric = test BLEU of the averaged model;
4. timings (median seconds per update with and without a Hessian estimate), peak memory, and in ``extra``
   the semantics the run used (``loss_semantics``), the fairseq command and the BLEU details.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from engine.measure import peak_rss_mb, timing_summary
from engine.session import Diverged, Run

from . import average, scoring
from .console import WARNING_FILTERS, Console, sentence_done, updates_of
from .data import check_data_bin, read_index
from .fairseq_args import (
    TrainPlan,
    TranslationConfigError,
    effective_task,
    generate_argv,
    loss_semantics,
    train_plan,
)
from .synthetic import SyntheticSpec, write_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]
DIVERGENCE_MARKERS = ("FloatingPointError", "gradients are Nan/Inf", "Minimum loss scale reached")


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    # torch >= 2.6 loads weights_only by default; fairseq's checkpoints (written by this run) hold configs too.
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    # Known-harmless warnings of fairseq's dependencies, silenced where they arise (console.WARNING_FILTERS);
    # the user's own PYTHONWARNINGS come later and so take precedence.
    env["PYTHONWARNINGS"] = ",".join([*WARNING_FILTERS, *[w for w in [env.get("PYTHONWARNINGS")] if w]])
    env.update(extra or {})
    return env


def run_streaming(argv: list[str], *, env: dict[str, str], log_path: Path, echo: bool,
                  on_line: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run ``argv``, appending its merged output to ``log_path``; returns (exit code, last 200 lines)."""
    tail: deque[str] = deque(maxlen=200)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                bufsize=1, cwd=str(REPO_ROOT))
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                if echo:
                    sys.stdout.write(line)
                if on_line is not None:
                    on_line(line)
            return proc.wait(), list(tail)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _fairseq(module: str) -> list[str]:
    return [sys.executable, "-m", f"fairseq_cli.{module}"]


# -- data ----------------------------------------------------------------------------------------------------
def prepare_synthetic(data_cfg: dict[str, Any], task: dict[str, Any], out: Path, *, echo: bool) -> Path:
    spec = SyntheticSpec(**(data_cfg.get("synthetic") or {}))
    raw = out / "raw"
    write_corpus(raw, spec, src=task["src"], tgt=task["tgt"])
    bin_dir = out / "bin"
    argv = _fairseq("preprocess") + [
        "--source-lang", task["src"], "--target-lang", task["tgt"],
        "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"), "--testpref", str(raw / "test"),
        "--destdir", str(bin_dir), "--joined-dictionary", "--workers", "1"]
    with Console(echo, "binarizing the synthetic corpus", "line") as console:
        rc, tail = run_streaming(argv, env=subprocess_env(), log_path=out / "preprocess.log", echo=False,
                                 on_line=console)
    if rc != 0:
        raise RuntimeError("fairseq-preprocess failed on the synthetic corpus:\n" + "\n".join(tail[-30:]))
    return bin_dir


def check_real_data(data: dict[str, Any], task: dict[str, Any]) -> Path:
    """``data.root`` holds complete, consistent binarized data for the task (tasks/translation/data.py)."""
    root = Path(data["root"])
    script = task.get("prepare_script", "scripts/prepare_<task>.sh")
    subsets = ("train", "valid", str((task.get("generate") or {}).get("subset", "test")))
    check_data_bin(root, task["src"], task["tgt"], subsets,
                   how_to_get=f"Prepare it with `{script}` (see docs/translation.md), point data.root (or "
                              f"ADAHESSIAN_DATA) at it, or use data.source=synthetic")
    return root


def resolve_data(cfg: dict[str, Any], task: dict[str, Any], work_dir: Path, *, echo: bool) -> tuple[Path, str | None]:
    """(binarized data directory, raw test references for sacreBLEU or None)."""
    data = cfg["data"]
    if data["source"] == "synthetic":
        return prepare_synthetic(data, task, work_dir / "data", echo=echo), None
    return check_real_data(data, task), data.get("sacrebleu_ref")


# -- training log --------------------------------------------------------------------------------------------
class TrainMonitor:
    """Turns fairseq's JSON log lines into record rows and W&B points; notices non-finite losses."""

    def __init__(self, run: Run, plan: TrainPlan):
        self.run = run
        self.plan = plan
        # The subset fairseq validates on (the first of --valid-subset; the cpu scale's is "test"): its lines are
        # the curve.
        subsets = str(((getattr(plan, "task", None) or {}).get("fairseq_args") or {}).get("valid_subset") or "valid")
        self.valid_subset = subsets.split(",")[0].strip()
        self.rows: list[dict[str, Any]] = list(run.record.data.get("history") or [])
        self.inner_losses: list[float] = []   # train_inner losses since the last validation
        self.last_lr: float | None = None
        self.diverged: str | None = None
        self.t0 = time.time()

    def _finite(self, name: str, value: Any, where: str) -> None:
        v = scoring._float(value)
        if v is not None and not math.isfinite(v) and self.diverged is None:
            self.diverged = f"non-finite {name} ({value}) {where}"

    def on_line(self, line: str) -> None:
        parsed = scoring.parse_log_line(line, self.valid_subset)
        if parsed is None:
            return
        tag, stats = parsed
        if tag == "loaded":
            # Rows logged after the checkpoint we resume from were never checkpointed: drop them, and any test
            # row of an earlier attempt (the averaged model is evaluated again at the end).
            self.rows = [r for r in self.rows if (r.get("step") or 0) <= stats["updates"] and "eval" not in r]
            self.run.replace_history(self.rows)
            return
        if tag == "train_inner":
            step = int(stats.get("num_updates", 0))
            self._finite("training loss", stats.get("loss"), f"at update {step}")
            self.last_lr = scoring._float(stats.get("lr"))
            loss = scoring._float(stats.get("loss"))
            if loss is not None:
                self.inner_losses.append(loss)
            point = {f"train/{k}": scoring._float(stats.get(k)) for k in ("loss", "nll_loss", "lr", "gnorm", "wps",
                                                                          "ups", "wpb", "bsz")}
            self.run.log_metrics({k: v for k, v in point.items() if v is not None}, step=step)
        elif tag == "train":
            self._finite("training loss", stats.get("train_loss"), f"in epoch {stats.get('epoch')}")
        elif tag == "valid":
            step = int(stats.get("valid_num_updates", 0))
            self._finite("validation loss", stats.get("valid_loss"), f"at update {step}")
            interval = self.plan.interval_updates
            epoch = step // interval if interval else int(stats.get("epoch", 0))
            row = {
                "epoch": epoch,
                "step": step,
                # mean of the logged training losses (every log_every updates) since the last validation
                "train_loss": statistics.fmean(self.inner_losses) if self.inner_losses else None,
                "val_loss": scoring._float(stats.get("valid_loss")),
                "val_nll_loss": scoring._float(stats.get("valid_nll_loss")),
                "val_ppl": scoring._float(stats.get("valid_ppl")),
                "lr": self.last_lr,
                "time_s": round(time.time() - self.t0, 1),
            }
            if self.valid_subset != "valid":
                row["val_subset"] = self.valid_subset  # the val_* columns are of this split
            self.inner_losses = []
            self.rows.append(row)
            self.run.log_eval(row, step=step)


def read_step_log(path: Path, upto: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    # A resumed run re-does the updates after its checkpoint: keep the last entry per update number.
    by_update = {r["update"]: r for r in rows}
    return [by_update[u] for u in sorted(by_update) if upto is None or u <= upto]


def timing_from_steps(steps: list[dict[str, Any]]) -> tuple[dict[str, Any], float | None, dict[str, Any]]:
    """(record timing, the plugin's peak memory MB, extra timing facts) from the plugin's per-update log.

    The timing is the engine's one summary. The plugin's peak memory is the CUDA allocator peak on GPU and the
    process's resident memory on CPU.
    """
    hess = [s["dt"] for s in steps if s["hessian"]]
    plain = [s["dt"] for s in steps if not s["hessian"]]
    wall = sum(s["dt"] for s in steps)
    tokens = sum(s["ntokens"] for s in steps)
    timing = timing_summary(hess, plain, sum(s["nsentences"] for s in steps), wall)
    peak = max((s.get("peak_memory_mb") or 0.0 for s in steps), default=None)
    return timing, peak, {"tokens_per_s": tokens / wall if wall > 0 else None, "updates": len(steps)}


def _sentences(data_dir: Path, task: dict[str, Any], subset: str) -> int | None:
    """Sentences in a binarized subset (from its index), for the generation bar's total; None if unreadable."""
    try:
        return len(read_index(data_dir / f"{subset}.{task['src']}-{task['tgt']}.{task['src']}.idx")[1])
    except (OSError, ValueError):
        return None


# -- the run -------------------------------------------------------------------------------------------------
def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _device_name(plan: TrainPlan) -> str:
    if plan.devices.cpu:
        import platform

        return f"cpu ({platform.processor() or platform.machine()})"
    import torch

    name = torch.cuda.get_device_name(0)
    return f"{plan.devices.world_size} x {name}" if plan.devices.world_size > 1 else name


def train(cfg: DictConfig, run: Run) -> None:
    c = OmegaConf.to_container(cfg, resolve=True)
    work = Path(run.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    echo = bool(c["trainer"].get("progress", True))
    task = effective_task(c)
    step_log = work / "step_log.jsonl"
    try:
        plan = train_plan(c, "DATA", work, step_log, _cuda_count())
    except TranslationConfigError as e:
        raise ValueError(str(e)) from None
    data_dir, raw_refs = resolve_data(c, task, work, echo=echo)
    plan.argv[0] = str(data_dir)

    semantics = loss_semantics(c["optim"]["name"], task)
    run.update(device=_device_name(plan), extra={
        "loss_semantics": semantics,
        "fairseq_train_argv": plan.argv,
        "update_freq": plan.update_freq,
        "world_size": plan.devices.world_size,
        "dropout_preset": task["model"].get("dropout_preset"),
        "data_dir": str(data_dir),
    })

    # 2. train
    monitor = TrainMonitor(run, plan)
    if not c.get("resume") and (work / "checkpoint_last.pt").exists():
        raise RuntimeError(f"{work} already holds a fairseq run (checkpoint_last.pt); refusing to overwrite it")
    if not c.get("resume") and step_log.exists():
        step_log.unlink()
    t_start = time.time()
    with Console(echo, "fairseq-train", "update", total=plan.max_update, position=updates_of,
                 absolute=True) as console:
        rc, tail = run_streaming(_fairseq("train") + plan.argv, env=subprocess_env(plan.env),
                                 log_path=work / "train.log", echo=False,
                                 on_line=lambda line: (monitor.on_line(line), console(line)))
    steps = read_step_log(step_log)
    timing, peak, timing_extra = timing_from_steps(steps)
    # One meaning per record field: resident memory of the fairseq processes; allocator bytes only on GPU.
    run.update(timing=timing, peak_rss_mb=peak_rss_mb(children=True),
               peak_tensor_mb=None if plan.devices.cpu else peak,
               extra={"train_process_s": round(time.time() - t_start, 1), **timing_extra})
    text = "\n".join(tail)
    if monitor.diverged or (rc != 0 and any(m in text for m in DIVERGENCE_MARKERS)):
        raise Diverged(monitor.diverged or "fairseq stopped on non-finite gradients: "
                       + next(line for line in reversed(tail) if any(m in line for m in DIVERGENCE_MARKERS)))
    if rc != 0:
        raise RuntimeError(f"fairseq-train exited with {rc}:\n" + "\n".join(tail[-40:]))

    # 3. average, generate, score
    paths = average.last_checkpoints(work, plan.average_last)
    if not paths:
        raise RuntimeError(f"fairseq-train wrote no epoch/update checkpoint in {work}")
    averaged = average.save_average(paths, work / f"checkpoint_avg_last{plan.average_last}.pt")
    gen_argv = _fairseq("generate") + generate_argv(task, data_dir, averaged, plan.devices.cpu)
    subset = str((task.get("generate") or {}).get("subset", "test"))
    gen_out = work / "generate.txt"
    gen_out.unlink(missing_ok=True)
    t_gen = time.time()
    # fairseq-generate prints nothing useful until it is done (minutes on a CPU): a bar over the test sentences.
    with Console(echo, f"translating the {subset} set", "sentence", total=_sentences(data_dir, task, subset),
                 echo=False, position=sentence_done) as console:
        rc, tail = run_streaming(gen_argv, env=subprocess_env(plan.env), log_path=gen_out, echo=False,
                                 on_line=console)
    if rc != 0:
        raise RuntimeError(f"fairseq-generate exited with {rc}:\n" + "\n".join(tail[-40:]))
    gen = scoring.parse_generate(gen_out.read_text(encoding="utf-8"))
    bleu_cfg = task.get("bleu") or {}
    scores = scoring.score_generation(
        gen, tgt_lang=task["tgt"], lowercase=bool(bleu_cfg.get("lowercase", False)),
        split_compounds=bool(bleu_cfg.get("compound_split", False)),
        sacrebleu_tokenize=str(bleu_cfg.get("sacrebleu_tokenize", "13a")), raw_refs_path=raw_refs)
    last = monitor.rows[-1] if monitor.rows else {}
    row = {
        "epoch": last.get("epoch"),
        "step": last.get("step"),
        "eval": f"{gen.subset}: average of last {len(paths)} checkpoints, beam {gen.beam}",
        "bleu": scores["bleu"],
        "sacrebleu": scores["sacrebleu"],
        "bleu_fairseq": scores["bleu_fairseq"],
        "lr": last.get("lr"),
        "time_s": last.get("time_s"),
    }
    run.log_eval(row, step=last.get("step"))
    run.update(extra={"bleu": scores, "averaged_checkpoints": [p.name for p in paths],
                      "generate_s": round(time.time() - t_gen, 1), "fairseq_generate_argv": gen_argv[3:]})
    if scores["bleu"] is None:
        raise Diverged("BLEU is not finite")
