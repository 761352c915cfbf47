"""fairseq task ``translation_suite``: fairseq's ``translation`` plus what the suite needs around a step.

- Double backward through attention: fairseq 0.12's self-attention goes through PyTorch's
  ``F.multi_head_attention_forward`` into scaled-dot-product attention, whose flash (CPU, CUDA) and
  memory-efficient (CUDA) kernels have no double backward. On updates where the optimizer needs a Hessian
  estimate the forward runs with the math backend only; other updates (and every update of other optimizers)
  keep the fast kernels.
- ``--step-log FILE``: one JSON line per update (rank 0): update number, seconds from the first micro-batch's
  forward to the end of the optimizer step, whether it drew a Hessian estimate, sentences, tokens and the peak
  memory so far (CUDA allocator peak, or the process's peak RSS on CPU). The suite's launcher turns it into the
  run record's timing.
"""


import json
import resource
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from optim.attention import hessian_safe_attention


def optimizer_needs_hessian(optimizer) -> bool:
    fn = getattr(optimizer, "needs_hessian", None)
    return bool(fn()) if callable(fn) else False


def _peak_memory_mb(device: torch.device | None) -> float:
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class TranslationSuiteConfig(TranslationConfig):
    step_log: str = field(default="", metadata={"help": "append one JSON line per update to this file (rank 0)"})


@register_task("translation_suite", dataclass=TranslationSuiteConfig)
class TranslationSuiteTask(TranslationTask):
    cfg: TranslationSuiteConfig

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self._t0 = None
        self._hessian = False
        self._sentences = 0
        self._tokens = 0
        self._device = None
        self._log = None

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        if self._t0 is None:  # first micro-batch of this update
            self._device = next(model.parameters()).device
            if self._device.type == "cuda":
                torch.cuda.synchronize(self._device)
            self._t0 = time.perf_counter()
            self._hessian = optimizer_needs_hessian(optimizer)
            self._sentences = self._tokens = 0
        if not ignore_grad and sample:
            self._sentences += int(sample.get("nsentences", 0))
            self._tokens += int(sample.get("ntokens", 0))
        with hessian_safe_attention(enabled=self._hessian):
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)

    def optimizer_step(self, optimizer, model, update_num):
        super().optimizer_step(optimizer, model, update_num)
        if self._t0 is None:
            return
        if self._device is not None and self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        dt = time.perf_counter() - self._t0
        self._t0 = None
        if not self.cfg.step_log or (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0):
            return
        if self._log is None:
            self._log = open(self.cfg.step_log, "a", buffering=1)
        self._log.write(json.dumps({
            "update": int(update_num) + 1, "dt": dt, "hessian": self._hessian,
            "nsentences": self._sentences, "ntokens": self._tokens,
            "peak_memory_mb": round(_peak_memory_mb(self._device), 1),
        }) + "\n")
