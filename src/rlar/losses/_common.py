"""Helpers shared by the loss modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def graph_zero(reference: torch.Tensor) -> torch.Tensor:
    """An exact scalar 0 that belongs to ``reference``'s autograd graph.

    Used when a batch holds no valid sample for a loss: the result is 0 (not NaN, as a mean over nothing would be),
    and ``backward``/``autograd.grad`` through it still work and give zero gradients. Summing an empty slice (rather
    than ``reference.sum() * 0``) keeps it exactly 0 even if ``reference`` holds inf or NaN.
    """
    return reference.reshape(-1)[:0].sum()


def batch_tensor(batch: Mapping[str, Any], key: str, purpose: str, device: torch.device) -> torch.Tensor:
    """``batch[key]`` as a tensor on ``device``; KeyError/TypeError naming the key and why it is needed."""
    if key not in batch:
        raise KeyError(f"batch has no '{key}' entry, needed for the {purpose} (batch keys: {sorted(batch)})")
    value = batch[key]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"batch['{key}'] must be a tensor for the {purpose}, got {type(value).__name__}")
    return value.to(device)


def as_bool_vector(flags: torch.Tensor, batch_size: int, key: str) -> torch.Tensor:
    """Check a per-sample flag vector (B,) and return it as bool."""
    if flags.ndim != 1 or flags.shape[0] != batch_size:
        raise ValueError(f"batch['{key}'] must have shape ({batch_size},), got {tuple(flags.shape)}")
    return flags.bool()
