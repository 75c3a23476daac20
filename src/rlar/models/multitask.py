"""RlarNet: shared encoder + U-Net decoder (segmentation) + embedding/TI-RADS branch (classification).

The forward can *cut* the graph at a named representation z (``cut_at="bottleneck"``, ``"enc3"``, ...). Everything
downstream of z is then computed from detached leaf copies of the tensors that cross the boundary:

* z itself (consumed by the later encoder stages, the decoder and/or the classification branch), and
* for a mid-level z, the earlier encoder maps that the heads still read directly (U-Net skips; mid-level maps the
  classification branch pools), because they too carry gradient from the heads into the trunk.

Each crossing is reported as a ``(trunk_tensor, head_leaf)`` pair in ``out.cut`` (z first, then the earlier maps
fine to coarse). A strategy can then take per-task gradients at the boundary with the heads' backward only
(``torch.autograd.grad(loss_t, leaves)``), combine them however it likes, and finish the expensive trunk backward
once with ``torch.autograd.backward(trunk_tensors, combined_leaf_grads)``. For a plain sum of losses this gives
exactly the gradients of ``loss.backward()`` on an uncut forward (tested). Note the trunk tensors only require grad
if some trunk parameter does (a fully frozen trunk needs no trunk backward).

Input sizes that are not a multiple of the network stride (16 for ``compact``, 32 for the others) are padded to the
next multiple (``pad_mode``: reflect by default, falling back to zeros when the image is too small to reflect) and the
mask logits are cropped back to the input size, so callers never see the padding. ``pad_mode="error"`` raises
instead. Inference needs neither a mask nor radiomics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Encoder
from .decoder import UNetDecoder
from .heads import ClassificationBranch
from .options import PAD_MODES
from .output import MultitaskOutput
from .weights import LoadReport

ARCHS = ("multitask", "segmentation", "classification")


class RlarNet(nn.Module):
    """Multitask (or single-task) network; build it with :func:`rlar.models.build_model`.

    Args:
        encoder: a staged encoder.
        decoder: U-Net decoder, or None (classification-only).
        classifier: classification branch, or None (segmentation-only).
        cls_levels: names of the encoder maps the classification branch pools (representation names; their pooled
            vectors are concatenated in this order).
        arch: "multitask", "segmentation" or "classification" (for bookkeeping and error messages).
        backbone: backbone name (bookkeeping).
        in_channels: expected image channels.
        pad_mode: how to pad inputs whose size is not a multiple of ``stride`` (see module docstring).
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: UNetDecoder | None,
        classifier: ClassificationBranch | None,
        cls_levels: Sequence[str] = ("bottleneck",),
        arch: str = "multitask",
        backbone: str = "compact",
        in_channels: int = 1,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got '{arch}'")
        if decoder is None and classifier is None:
            raise ValueError("a network needs a decoder, a classifier or both")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got '{pad_mode}'")
        unknown = [n for n in cls_levels if n not in encoder.names]
        if unknown:
            raise ValueError(f"cls_levels {unknown} are not encoder stages; choose from {list(encoder.names)}")
        self.encoder = encoder
        self.decoder = decoder
        self.classifier = classifier
        self.cls_levels = tuple(cls_levels)
        self.arch = arch
        self.backbone = backbone
        self.in_channels = int(in_channels)
        self.pad_mode = pad_mode
        # Set by rlar.models.build_model: label-space size, embedding sizes, and the pretrained_path load report.
        self.num_classes = 0
        self.tirads_dim = 0
        self.deep_dim = 0
        self.pretrained_report: LoadReport | None = None
        # Names of encoder maps the heads read directly (not only through later encoder stages).
        consumed = set(self.cls_levels) if classifier is not None else set()
        if decoder is not None:
            consumed |= set(encoder.names)
        self._head_inputs = consumed

    # ------------------------------------------------------------------ introspection
    @property
    def representation_names(self) -> tuple[str, ...]:
        """Names accepted by ``cut_at`` and present in ``out.features``, fine to coarse."""
        return tuple(self.encoder.names)

    @property
    def extra_tasks(self) -> tuple[str, ...]:
        """The optional tasks (``rlar.tasks``) this network has a head for, in table order."""
        return tuple(self.classifier.task_heads) if self.classifier is not None else ()

    @property
    def stride(self) -> int:
        """Input sizes are padded to a multiple of this."""
        return self.encoder.stride

    def _cut_index(self, cut_at: str) -> int:
        if cut_at not in self.encoder.names:
            raise ValueError(f"unknown representation '{cut_at}'; choose from {list(self.encoder.names)}")
        return self.encoder.names.index(cut_at)

    def head_parameters(self, cut_at: str = "bottleneck") -> list[nn.Parameter]:
        """Parameters downstream of the representation ``cut_at``: later encoder stages, decoder, classifier."""
        k = self._cut_index(cut_at)
        params: list[nn.Parameter] = []
        for i in range(k + 1, len(self.encoder.names)):
            params += self.encoder.stage_parameters(i)
        for module in (self.decoder, self.classifier):
            if module is not None:
                params += list(module.parameters())
        seen: set[int] = set()
        unique = []
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                unique.append(p)
        return unique

    def trunk_parameters(self, cut_at: str = "bottleneck") -> list[nn.Parameter]:
        """Parameters upstream of (and producing) the representation ``cut_at``: every parameter not in the heads."""
        head = {id(p) for p in self.head_parameters(cut_at)}
        return [p for p in self.parameters() if id(p) not in head]

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor image batch, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"expected an image batch of shape (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channel(s), got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point image tensor, got dtype {x.dtype}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"empty input batch of shape {tuple(x.shape)}")

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pad H and W up to a multiple of the stride (split evenly); return the padded batch and (top, left)."""
        s = self.stride
        h, w = x.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        if ph == 0 and pw == 0:
            return x, (0, 0)
        if self.pad_mode == "error":
            raise ValueError(
                f"input size {h}x{w} is not a multiple of the network stride {s} "
                f"(backbone '{self.backbone}'); resize to a multiple of {s} or use pad_mode='reflect'"
            )
        top, left = ph // 2, pw // 2
        pad = (left, pw - left, top, ph - top)
        mode = self.pad_mode
        if mode == "reflect" and (max(pad[:2]) >= w or max(pad[2:]) >= h):
            mode = "constant"  # reflection needs the pad to be smaller than the image side
        return F.pad(x, pad, mode=mode), (top, left)

    def forward(self, x: torch.Tensor, cut_at: str | None = None) -> MultitaskOutput:
        """Run the network; see the module docstring for ``cut_at``."""
        self._check_input(x)
        h, w = x.shape[-2:]
        t, (top, left) = self._pad(x)
        names = self.encoder.names
        cut_idx = self._cut_index(cut_at) if cut_at is not None else -1

        feats: dict[str, torch.Tensor] = {}
        cut: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, name in enumerate(names):
            t = self.encoder.run_stage(i, t)
            if i == cut_idx:
                # z itself: every later stage and head reads the leaf, not the trunk tensor.
                leaf = t.detach().requires_grad_()
                cut.append((t, leaf))
                t = leaf
                # Earlier maps the heads read directly also cross the boundary.
                for j in range(i):
                    nj = names[j]
                    if nj in self._head_inputs:
                        leaf_j = feats[nj].detach().requires_grad_()
                        cut.append((feats[nj], leaf_j))
                        feats[nj] = leaf_j
            feats[name] = t

        mask_logits = None
        nodule = None
        aux_mask_logits: list[torch.Tensor] = []
        if self.decoder is not None:
            # Deep-supervision logits only while training: they feed the loss, never a prediction.
            mask_logits, aux = self.decoder.forward_with_aux([feats[n] for n in names], with_aux=self.training)
            if self.classifier is not None and self.classifier.pooling == "nodule":
                # On the padded grid of the feature maps; detached: where to look is not learnt from the grade.
                nodule = torch.sigmoid(mask_logits.detach())
            size = mask_logits.shape[-2:]
            mask_logits = mask_logits[..., top : top + h, left : left + w]
            aux_mask_logits = [F.interpolate(a, size=size, mode="bilinear", align_corners=False)
                               [..., top : top + h, left : left + w] for a in aux]
        class_logits = h_tirads = h_deep = None
        task_logits: dict[str, torch.Tensor] = {}
        if self.classifier is not None:
            class_logits, h_tirads, h_deep, task_logits = self.classifier([feats[n] for n in self.cls_levels], nodule)
        return MultitaskOutput(
            mask_logits=mask_logits,
            aux_mask_logits=aux_mask_logits,
            class_logits=class_logits,
            h_tirads=h_tirads,
            h_deep=h_deep,
            features=feats,
            cut=cut,
            cut_layer=cut_at,
            task_logits=task_logits,
        )

    def extra_repr(self) -> str:
        return f"arch={self.arch}, backbone={self.backbone}, stride={self.stride}"
