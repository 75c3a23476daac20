"""Multi-process data-parallel training under ``torchrun`` without DistributedDataParallel.

Why not DDP: strategies (RLAR, PCGrad, Nash-MTL, torchjd aggregators ...) differentiate through gradients
(``create_graph=True``) or call ``backward`` several times per step; DDP's reducer hooks fire on every backward
and do not support double backward. Instead each rank runs ``strategy.step`` on its own shard, which fills
``.grad`` locally, then :func:`all_reduce_gradients` averages the gradients across ranks before the optimiser
step. With identical initial weights (:func:`broadcast_parameters`) and identical optimiser steps, every rank
holds the same weights throughout. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job. A plain single-process run is rank 0 of world size 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistContext:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    Without those variables (a plain ``rlar train``) this is a no-op returning a single-process context.
    Backend: nccl for CUDA, gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def cleanup_distributed(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_parameters(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (start from identical weights)."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(parameters: list[nn.Parameter], ctx: DistContext) -> None:
    """Average ``.grad`` over ranks, in one flat buffer (one collective instead of one per tensor).

    A parameter without a gradient on this rank contributes zeros, so every rank issues the same collective
    and ends with the same gradient (a rank with no valid sample for a head must not desynchronise the others).
    """
    if not ctx.enabled or not parameters:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for param in parameters:
        n = param.numel()
        param.grad = flat[offset : offset + n].view_as(param).clone()
        offset += n


def sync_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Average floating buffers (BatchNorm running statistics), copy integer ones from rank 0.

    Each rank's statistics come from its own shard; averaging makes the evaluated/saved model represent all data.
    """
    if not ctx.enabled:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer /= ctx.world_size
            else:
                dist.broadcast(buffer, src=0)


def reduce_mean(values: dict[str, float], ctx: DistContext, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean of per-rank scalars across ranks (keys must agree on every rank; NaN entries stay NaN)."""
    if not ctx.enabled or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= ctx.world_size
    return dict(zip(keys, tensor.tolist(), strict=True))


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (validation decisions, stop flags)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
