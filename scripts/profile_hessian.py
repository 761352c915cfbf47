#!/usr/bin/env python
"""Where the time of a Hessian step goes: phases timed side by side, and torch.profiler's operator families.

For a task's model and batch (the model is built by the task's own code from conf/task/<task>.yaml; inputs are
random, of the task's shape), two kinds of training step:

- plain step (SGD): forward, backward, optimizer update;
- Hessian step (AdaHessian, every step): forward, graph-carrying backward (``create_graph=True``), the
  Hessian-vector product (the one ``torch.autograd.grad`` call of ``optim.hutchinson.hvp``, timed inside
  ``optimizer.step()``) and the rest of ``step()`` (Rademacher draw, |Hz|, spatial averaging, moments, update).

``--layers`` chooses the models each step runs on: ``torch`` (torch's modules), ``fast-bn`` (the batch norms swapped
by ``optim.fast_batchnorm``) and ``fast-bn+conv`` (and the convolutions by ``optim.fast_conv``, as a CPU Hessian run
of the suite has them); all three by default, ``torch`` only for a model with neither (the others would be the same
model). Every variant keeps its own model copy; variants run round-robin
(starting variant rotated every round) and the medians over rounds are reported, so a slow phase of a shared
machine hits all of them alike.

Then a few Hessian steps of each variant run under ``torch.profiler`` and every operator's self time is put in one
family: convolution, batch norm, element-wise, matmul, attention or other. An operator counts for the family of
the outermost recognized operator above it; a backward node (``autograd::engine::evaluate_function: XBackward``)
counts for the operator that created it (linked by autograd's sequence number), so the element-wise kernels of
batch norm's double backward count as batch norm, not as element-wise. Shares are of the product's time and of
the whole Hessian step's (profiler self times: the profiler adds overhead per operator, so they are shares, not
timings; the timings come from the unprofiled rounds).

    python -m scripts.profile_hessian --task cifar10_resnet20 --batch 64 --threads 1
    python -m scripts.profile_hessian --task ptb_transformer

Writes ``results/tables/profile_hessian_<device>.md`` and ``.csv`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

import optim.hutchinson as hutchinson
from optim import AdaHessian, fast_batchnorm, fast_conv, hessian_safe_attention

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("cifar10_resnet20", "cifar10_resnet32", "ptb_transformer")
DEFAULT_BATCH = {"cifar10_resnet20": 64, "cifar10_resnet32": 64}  # the benchmark's; others: the task's own
FAMILIES = ("convolution", "batch norm", "element-wise", "matmul", "attention", "other")
# Model variants: the swaps applied to a copy of the task's model.
LAYERS = {"torch": (), "fast-bn": (fast_batchnorm,), "fast-bn+conv": (fast_batchnorm, fast_conv)}
PHASES = {"plain": ("forward", "backward", "update"),
          "hessian": ("forward", "backward (create_graph)", "Hessian-vector product", "update")}
# A tiny model for tests and quick looks (--tiny): same code, smaller sizes.
TINY_LM = {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64}


# ------------------------------------------------------------------ models
def build(task: str, batch: int, device: torch.device, tiny: bool = False, seed: int = 0):
    """(model, loss_fn(model) -> scalar) for ``task`` on a fixed random batch of the task's shape."""
    cfg = OmegaConf.load(ROOT / "conf" / "task" / f"{task}.yaml")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if cfg.task.family == "vision":
        from tasks.vision import build_model

        model = build_model(cfg.task)
        x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, cfg.task.num_classes, (batch,), generator=g).to(device)
        return model.to(device), lambda m: F.cross_entropy(m(x), y)
    if cfg.task.family == "language_model":
        from tasks.language_model import build_model

        if tiny:
            cfg.task.model = OmegaConf.merge(cfg.task.model, TINY_LM)
        vocab = cfg.data.synthetic.vocab_size  # PTB's 10k words
        model = build_model(cfg.task, vocab)
        tokens = torch.randint(0, vocab, (batch, cfg.task.bptt + 1), generator=g).to(device)

        def lm(m: nn.Module) -> torch.Tensor:
            logits = m(tokens[:, :-1])
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))

        return model.to(device), lm
    raise ValueError(f"task {task!r} is not profiled here; choose one of {', '.join(TASKS)}")


def has_swappable(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.conv._ConvNd)) for m in model.modules())


# ------------------------------------------------------------------ timed steps
class _TimedHvp:
    """Wraps ``optim.hutchinson.hvp`` (the module global that ``diag_estimate`` calls) to time the product inside
    ``optimizer.step()`` and to label it for the profiler; restored on exit."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync, self.seconds = sync, 0.0

    def __enter__(self):
        self._orig = hutchinson.hvp

        def timed(*args, **kwargs):
            self.sync()
            t0 = time.perf_counter()
            with record_function("hessian_vector_product"):
                out = self._orig(*args, **kwargs)
            self.sync()
            self.seconds += time.perf_counter() - t0
            return out

        hutchinson.hvp = timed
        return self

    def __exit__(self, *exc) -> None:
        hutchinson.hvp = self._orig


class Variant:
    """One model copy with its optimizer: a plain (SGD) or Hessian (AdaHessian) step on one of ``LAYERS``."""

    def __init__(self, kind: str, layers: str, model: nn.Module, loss_fn, device: torch.device,
                 attention: bool) -> None:
        self.kind, self.layers, self.device = kind, layers, device
        self.model = copy.deepcopy(model)
        for swap in LAYERS[layers]:
            swap(self.model)
        self.loss_fn = loss_fn
        self.attention = attention
        params = list(self.model.parameters())
        # Small learning rates keep the model near its start: this measures cost, not training.
        self.opt = (torch.optim.SGD(params, lr=1e-3, momentum=0.9) if kind == "plain"
                    else AdaHessian(params, lr=1e-3, seed=0))

    @property
    def name(self) -> str:
        return f"{self.kind} / {self.layers}"

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> dict[str, float]:
        """One step; seconds per phase."""
        hessian = self.kind == "hessian"
        times = {}
        with hessian_safe_attention() if self.attention else nullcontext(), _TimedHvp(self.sync) as product:
            self.sync()
            t0 = time.perf_counter()
            with record_function("forward"):
                loss = self.loss_fn(self.model)
            self.sync()
            t1 = time.perf_counter()
            with record_function("backward"):
                loss.backward(create_graph=hessian)
            self.sync()
            t2 = time.perf_counter()
            with record_function("optimizer step"):
                self.opt.step()
            self.sync()
            t3 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        names = PHASES[self.kind]
        times[names[0]], times[names[1]] = t1 - t0, t2 - t1
        if hessian:
            times[names[2]], times[names[3]] = product.seconds, t3 - t2 - product.seconds
        else:
            times[names[2]] = t3 - t2
        times["step"] = t3 - t0
        return times


def time_variants(variants: list[Variant], rounds: int, warmup: int) -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, list[float]]] = {v.name: {} for v in variants}
    for rnd in range(warmup + rounds):
        k = rnd % len(variants)
        for v in variants[k:] + variants[:k]:
            t = v.step()
            if rnd >= warmup:
                for phase, s in t.items():
                    samples[v.name].setdefault(phase, []).append(s)
        print(f"  round {rnd + 1}/{warmup + rounds}" + (" (warm-up)" if rnd < warmup else ""), file=sys.stderr,
              flush=True)
    return {n: {p: 1e3 * statistics.median(s) for p, s in ph.items()} for n, ph in samples.items()}


# ------------------------------------------------------------------ operator families
_PREFIX = re.compile(r"^(autograd::engine::evaluate_function: |aten::|torch::autograd::|mkldnn::)")
_MATMUL = {"mm", "bmm", "addmm", "baddbmm", "matmul", "linear", "addmv", "mv", "dot", "addbmm", "_addmm_activation"}
_ELEMENTWISE = re.compile(
    r"^_?(add|sub|rsub|mul|div|addcmul|addcdiv|relu|threshold|gelu|where|exp|abs|neg|sqrt|rsqrt|pow|sign|sgn|clamp|"
    r"tanh|sigmoid|dropout|native_dropout|fill|copy|zero|zeros_like|ones_like|lerp|maximum|minimum|masked_fill|"
    r"reciprocal|square|bitwise|to|_to_copy|eq|ne|gt|lt|ge|le|hardtanh|erf|empty_like|clone|mish|silu|leaky_relu)"
    r"(_|$|backward)")


def _base(name: str) -> str:
    # "autograd::engine::evaluate_function: ConvolutionBackwardBackward0" -> "convolution".
    n = _PREFIX.sub("", name).lower()
    while True:
        m = re.sub(r"backward\d*$", "", n)
        if m == n:
            return n.rstrip("_")
        n = m


def family_of_name(name: str) -> str | None:
    """The family an operator's name alone says (None: not specific; decided by the operators around it)."""
    n = _base(name)
    if "conv" in n:
        return "convolution"
    if re.search(r"batch_?norm", n):
        return "batch norm"
    if "attention" in n or re.search(r"(?<!log)(?<!log_)softmax", n):
        return "attention"
    if n in _MATMUL:
        return "matmul"
    return None


def classify(events, cuda: bool = False) -> list[tuple[str, float, bool, bool]]:
    """(family, self time in us, inside the product?, inside the Hessian step?) for every profiled CPU operator.

    The time is the operator's own CPU time, or with ``cuda`` the device time of the kernels it launched."""
    creator: dict[int, object] = {}
    for e in events:
        # The outermost operator with a sequence number created the autograd node of that number.
        if e.sequence_nr >= 0 and not e.name.startswith("autograd::engine::evaluate_function"):
            p = e.cpu_parent
            if p is None or p.sequence_nr != e.sequence_nr:
                creator.setdefault(e.sequence_nr, e)
    memo: dict[int, str | None] = {}

    def chain(e) -> list:
        out = []
        while e is not None:
            out.append(e)
            e = e.cpu_parent
        return out[::-1]  # outermost first

    def specific(e, depth: int = 0) -> str | None:
        if id(e) in memo:
            return memo[id(e)]
        fam = None
        for a in chain(e):
            if a.name.startswith("autograd::engine::evaluate_function") and a.sequence_nr in creator and depth < 8:
                fam = specific(creator[a.sequence_nr], depth + 1)
            if fam is None:
                fam = family_of_name(a.name)
            if fam is not None:
                break
        memo[id(e)] = fam
        return fam

    rows = []
    for e in events:
        if e.device_type != torch.autograd.DeviceType.CPU:
            continue
        names = {a.name for a in chain(e)}
        fam = specific(e)
        if fam is None:
            fam = "element-wise" if _ELEMENTWISE.search(_base(e.name)) else "other"
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        rows.append((fam, us, "hessian_vector_product" in names, "backward" in names
                     or "forward" in names or "optimizer step" in names))
    return rows


def family_shares(variant: Variant, steps: int) -> dict[str, dict[str, float]]:
    """{"product" | "hessian step": {family: self time (ms) per step}} from ``steps`` profiled Hessian steps."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if variant.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            variant.step()
    out = {"product": dict.fromkeys(FAMILIES, 0.0), "hessian step": dict.fromkeys(FAMILIES, 0.0)}
    for fam, us, in_product, in_step in classify(prof.events(), cuda=variant.device.type == "cuda"):
        if in_product:
            out["product"][fam] += us / 1e3 / steps
        if in_step:
            out["hessian step"][fam] += us / 1e3 / steps
    return out


# ------------------------------------------------------------------ main
def run(task: str, batch: int, device: torch.device, layers: list[str], rounds: int, warmup: int,
        profile_steps: int, tiny: bool = False) -> tuple[dict, dict]:
    model, loss_fn = build(task, batch, device, tiny=tiny)
    if not has_swappable(model):
        layers = ["torch"]  # nothing to swap: every variant would be the same model
    attention = task == "ptb_transformer"
    variants = [Variant(k, b, model, loss_fn, device, attention) for b in layers for k in ("plain", "hessian")]
    print(f"{task}: batch {batch}, {rounds} rounds on {device}, layers: {', '.join(layers)}", file=sys.stderr)
    timings = time_variants(variants, rounds, warmup)
    families = {v.name: family_shares(v, profile_steps) for v in variants if v.kind == "hessian"}
    return timings, families


def write(out: Path, header: list[str], results: list[tuple[str, int, dict, dict]], device: torch.device) -> None:
    rows, md = [], list(header)
    for task, batch, timings, families in results:
        md += [f"## {task} (batch {batch})", "", "Median ms per phase (unprofiled rounds):", "",
               "| step | " + " | ".join(("phase 1", "phase 2", "phase 3", "phase 4")) + " | step | x plain |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        plain = {n.split(" / ")[1]: t["step"] for n, t in timings.items() if n.startswith("plain")}
        for name, t in timings.items():
            kind, layers = name.split(" / ")
            phases = PHASES[kind]
            cells = [f"{p} {t[p]:.1f}" for p in phases] + [""] * (4 - len(phases))
            md.append(f"| {name} | " + " | ".join(cells) + f" | {t['step']:.1f} | {t['step'] / plain[layers]:.2f} |")
            for p in (*phases, "step"):
                rows.append({"task": task, "batch": batch, "device": device.type, "threads": torch.get_num_threads(),
                             "variant": name, "kind": "phase_ms", "item": p, "value": round(t[p], 3)})
        md += ["", "Operator families, share of profiler self time (ms per step in brackets):", "",
               "| Hessian step variant | scope | " + " | ".join(FAMILIES) + " |",
               "|---|---|" + "---:|" * len(FAMILIES)]
        for name, scopes in families.items():
            for scope, fams in scopes.items():
                total = sum(fams.values()) or 1.0
                md.append(f"| {name} | {scope} | "
                          + " | ".join(f"{100 * fams[f] / total:.1f}% ({fams[f]:.1f})" for f in FAMILIES) + " |")
                for f in FAMILIES:
                    rows.append({"task": task, "batch": batch, "device": device.type,
                                 "threads": torch.get_num_threads(), "variant": name, "kind": f"share:{scope}",
                                 "item": f, "value": round(fams[f] / total, 5)})
        md.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out.with_suffix(".md").write_text("\n".join(md))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=[*TASKS, "all"], default="all",
                    help="all: cifar10_resnet20 and ptb_transformer")
    ap.add_argument("--batch", type=int, default=None, help="default: 64 for the CIFAR ResNets, the task's own else")
    ap.add_argument("--layers", default=",".join(LAYERS),
                    help=f"comma-separated model variants among {', '.join(LAYERS)} (default: all; a model "
                         "without batch norm or convolution: torch only)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--profile-steps", type=int, default=2, help="Hessian steps under torch.profiler per variant")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--tiny", action="store_true", help="a tiny language model (tests, quick looks)")
    ap.add_argument("--out", default=None, help="output path without suffix (default: "
                                                  "results/tables/profile_hessian_<device>); writes .csv and .md")
    args = ap.parse_args(argv)
    for name in ("rounds", "profile_steps", "batch", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')}={value} is not allowed; it must be >= 1")
    if args.warmup < 0:
        ap.error(f"--warmup={args.warmup} is not allowed; it must be >= 0")
    layers = [x for x in args.layers.replace(" ", "").split(",") if x]
    bad = [x for x in layers if x not in LAYERS]
    if bad or not layers:
        ap.error(f"--layers={args.layers} is not allowed; choose a comma-separated list of {', '.join(LAYERS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device={args.device} is not available here (torch sees no CUDA device); use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = ["cifar10_resnet20", "ptb_transformer"] if args.task == "all" else [args.task]

    command = "python -m scripts.profile_hessian " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [f"# Where the time of a Hessian step goes ({device.type})", "",
              f"- command: `{command.strip()}`",
              f"- date: {dt.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}; "
              f"{torch.get_num_threads()} intra-op threads; {os.cpu_count()} CPUs visible",
              "- plain step: SGD; Hessian step: AdaHessian (every step). Phases: median ms over rounds; "
              "the product is timed inside optimizer.step(), update = the rest of step()",
              "- families: torch.profiler self time of every CPU operator, attributed to the outermost recognized "
              "operator above it, backward nodes to the operator that created them (see the script's docstring)",
              ""]
    results = []
    for task in tasks:
        batch = args.batch or DEFAULT_BATCH.get(task) or int(OmegaConf.load(
            ROOT / "conf" / "task" / f"{task}.yaml").task.batch_size)
        timings, families = run(task, batch, device, layers, args.rounds, args.warmup, args.profile_steps,
                                tiny=args.tiny)
        results.append((task, batch, timings, families))
    out = Path(args.out) if args.out else ROOT / "results" / "tables" / f"profile_hessian_{device.type}"
    write(out, header, results, device)
    print(out.with_suffix(".md").read_text())
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
