"""Multi-GPU (or multi-process CPU) training through ``torchrun``: process group, ranks, samplers.

``torchrun --nproc_per_node=N run.py task=... optim=...`` sets RANK / WORLD_SIZE / LOCAL_RANK; every process
runs the same launcher. Rank 0 owns the run record, W&B and checkpoints; all ranks share its run id.
The gradient exchange itself is in engine/trainer.py (DDP for plain steps; for AdaHessian's Hessian steps the
pattern of optim/distributed.py, since DDP's reducer cannot carry ``backward(create_graph=True)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env() -> DistEnv:
    """The torchrun environment of this process (a single process when WORLD_SIZE is unset)."""
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def setup() -> DistEnv:
    """Join the process group when launched by torchrun with more than one process (idempotent)."""
    e = env()
    if e.enabled and not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(e.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return e


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (the run id, so all ranks write to one run)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
