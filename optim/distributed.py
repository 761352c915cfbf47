"""Data-parallel helpers for second-order steps.

PyTorch's ``DistributedDataParallel`` cannot reduce gradients of ``backward(create_graph=True)``: its reducer
writes into ``.grad`` of leaf tensors in place and fails ("a leaf Variable that requires grad is being used in an
in-place operation"), and even where it runs it does not make the higher-order graph global. The supported
pattern is therefore:

1. compute *local* graph-carrying gradients without DDP's reducer: ``with ddp_model.no_sync():
   loss.backward(create_graph=True)`` (or no DDP wrapper at all, with parameters broadcast once at start);
2. average ``.grad`` over ranks with :func:`allreduce_grads_` (one bucketed collective; the gradients keep their
   graphs, so the Hessian-vector product below is still the *local* one);
3. ``opt.step()``: AdaHessian takes its local Hutchinson estimate and averages it over ranks with
   :func:`allreduce_mean_`, so every rank ends with the same estimate and the same update.

Plain backward steps (no Hessian) may use DDP normally (outside ``no_sync``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "allreduce_mean_", "allreduce_grads_"]


def is_distributed(group: dist.ProcessGroup | None = None) -> bool:
    """True when ``torch.distributed`` is initialized with more than one rank in ``group``."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


@torch.no_grad()
def allreduce_mean_(tensors: Sequence[Tensor], group: dist.ProcessGroup | None = None,
                    bucket_cap_mb: float | None = None) -> None:
    """Average ``tensors`` over the ranks of ``group`` in place, with one collective per bucket.

    Tensors are flattened into one contiguous buffer per (device, dtype) -- and further cut into buckets of at
    most ``bucket_cap_mb`` MiB if given -- so a model with hundreds of tensors costs one ``all_reduce``, not
    hundreds. Every rank must pass tensors of the same shapes in the same order. A no-op without a process group
    of more than one rank.
    """
    if not is_distributed(group) or not tensors:
        return
    world = dist.get_world_size(group)
    by_key: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        by_key.setdefault((t.device, t.dtype), []).append(t)
    for ts in by_key.values():
        cap = None if bucket_cap_mb is None else max(1, int(bucket_cap_mb * 2**20) // ts[0].element_size())
        for bucket in _buckets(ts, cap):
            flat = torch.cat([t.reshape(-1) for t in bucket])
            dist.all_reduce(flat, group=group)
            flat.div_(world)
            for t, chunk in zip(bucket, flat.split([t.numel() for t in bucket])):
                t.copy_(chunk.view(t.shape))


def _buckets(tensors: list[Tensor], cap: int | None) -> Iterable[list[Tensor]]:
    if cap is None:
        yield tensors
        return
    bucket: list[Tensor] = []
    size = 0
    for t in tensors:
        if bucket and size + t.numel() > cap:
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


def allreduce_grads_(params: Iterable[Tensor], group: dist.ProcessGroup | None = None,
                     bucket_cap_mb: float | None = None) -> None:
    """Average ``p.grad`` over ranks for every param that has one (one bucketed collective per device/dtype).

    Works on graph-carrying gradients: the values are replaced in place under ``no_grad``, the graph (hence the
    local Hessian-vector product) is left as it is. Every rank must have gradients for the same parameters.
    """
    grads = [p.grad for p in params if p.grad is not None]
    allreduce_mean_(grads, group=group, bucket_cap_mb=bucket_cap_mb)
