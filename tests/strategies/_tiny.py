"""A tiny two-task network honouring the cut contract of rlar/models/output.py, for fast strategy tests.

trunk: enc1 (conv 1->4) -> bottleneck (strided conv 4->8); seg head: upsampled bottleneck + enc1 skip -> conv;
cls head: pooled bottleneck -> h = [h_tirads (13) | h_deep (3)] -> logits. Tanh activations keep everything
twice differentiable (for gradcheck of the second-order RLAR gradient).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlar.models.output import MultitaskOutput


class TinyNet(nn.Module):
    representation_names = ("enc1", "bottleneck")

    def __init__(self, num_classes: int = 3, batchnorm: bool = False, seg: bool = True, cls: bool = True) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh())
        self.bottleneck = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1),
                                        nn.BatchNorm2d(8) if batchnorm else nn.Identity(), nn.Tanh())
        self.dec = nn.Sequential(nn.Conv2d(12, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 1)) if seg else None
        self.embed = nn.Linear(8, 16) if cls else None
        self.cls_fc = nn.Linear(16, num_classes) if cls else None

    def head_parameters(self, cut_at: str = "bottleneck") -> list[nn.Parameter]:
        mods = [m for m in (self.dec, self.embed, self.cls_fc) if m is not None]
        if cut_at == "enc1":
            mods = [self.bottleneck, *mods]
        return [p for m in mods for p in m.parameters()]

    def forward(self, x: torch.Tensor, cut_at: str | None = None) -> MultitaskOutput:
        cut: list[tuple[torch.Tensor, torch.Tensor]] = []
        e1 = self.enc1(x)
        if cut_at == "enc1":
            leaf = e1.detach().requires_grad_()
            cut.append((e1, leaf))
            e1 = leaf
        b = self.bottleneck(e1)
        if cut_at == "bottleneck":
            leaf = b.detach().requires_grad_()
            cut.append((b, leaf))
            b = leaf
            if self.dec is not None:  # the skip crosses the cut too
                skip = e1.detach().requires_grad_()
                cut.append((e1, skip))
                e1 = skip
        mask_logits: torch.Tensor | None = None
        class_logits = h_t = h_d = mask_logits
        if self.dec is not None:
            up = F.interpolate(b, size=e1.shape[-2:], mode="nearest")
            mask_logits = self.dec(torch.cat([up, e1], 1))
        if self.embed is not None and self.cls_fc is not None:
            h = torch.tanh(self.embed(b.mean((2, 3))))
            h_t, h_d = h[:, :13], h[:, 13:]
            class_logits = self.cls_fc(h)
        return MultitaskOutput(mask_logits, class_logits, h_t, h_d, {"enc1": e1, "bottleneck": b}, cut, cut_at)


def make_batch(b: int = 4, size: int = 8, seed: int = 0, masks: bool = True, labels: bool = True,
               dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 1, size, size, generator=g, dtype=dtype)
    mask = (torch.rand(b, 1, size, size, generator=g) > 0.6).to(dtype)
    has_mask = torch.full((b,), masks)
    label = torch.randint(0, 3, (b,), generator=g) if labels else torch.full((b,), -1)
    return {"image": image, "mask": mask, "has_mask": has_mask, "label": label,
            "radiomics": torch.randn(b, 13, generator=g, dtype=dtype), "has_radiomics": torch.full((b,), masks),
            "image_id": [str(i) for i in range(b)], "patient_id": [str(i) for i in range(b)]}


def simple_loss(out: MultitaskOutput, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Smooth stand-in for MultitaskLoss: masked BCE, CE ignoring -1, masked MSE; exact graph zeros when empty."""
    losses: dict[str, torch.Tensor] = {}
    if out.mask_logits is not None:
        m = batch["has_mask"]
        per = F.binary_cross_entropy_with_logits(out.mask_logits, batch["mask"], reduction="none").mean((1, 2, 3))
        losses["seg"] = per[m].sum() / max(int(m.sum()), 1)
    if out.class_logits is not None:
        lab = batch["label"]
        ok = lab >= 0
        losses["cls"] = F.cross_entropy(out.class_logits[ok], lab[ok], reduction="sum") / max(int(ok.sum()), 1)
        r = batch["has_radiomics"]
        assert out.h_tirads is not None  # a classifier's output carries h_tirads
        losses["rad"] = ((out.h_tirads[r] - batch["radiomics"][r]) ** 2).mean(1).sum() / max(int(r.sum()), 1)
    return losses


def grad_of(p: torch.Tensor) -> torch.Tensor:
    """``p.grad``, which the step under test must have filled."""
    assert p.grad is not None, "a parameter without a gradient"
    return p.grad
