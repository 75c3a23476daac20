"""Radiomics targets that follow the training augmentation (``data.augmentation.targets: augmented``).

Why. Every method must see the same augmented images for a seed, or a comparison of a guided method with an
unguided one mixes the method with the augmentation. But rotation, scaling, gamma, brightness and speckle move
texture and echogenicity features by a large part of their dataset SD (benchmarks/radiomics_augmentation.py),
so a target computed on the un-augmented image no longer describes the input the network sees.

What. The target of a sample is its standardised native-resolution feature vector (the cached 13 features of the
source image and mask, :func:`rlar.radiomics.compute_targets`) shifted by the change the augmentation makes to the
same 13 features measured on the network input:

    target_aug = target + (f(aug(x), aug(m)) - f(x, m)) / sd

with x, m the resized network-input image and mask, f :func:`rlar.radiomics.extract_features` and sd the
standardiser's per-feature SD. Measuring the change at the network's resolution is what keeps the cost per step
small (a 128 px crop instead of a full-resolution image); keeping the native value as the base keeps the targets,
the checkpoint's standardiser and ``rlar predict``'s evidence read-out in the same units as before. A flip changes
no feature (the change is zero to rounding), so a flip-only sample keeps its target. f(x, m) of each image is
computed once and reused (the un-augmented input is the same every epoch). A sample whose augmented nodule can no
longer be measured (e.g. rotated mostly out of the frame) has its target switched off for that step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rlar.errors import DataError
from rlar.radiomics.features import extract_features
from rlar.radiomics.params import RadiomicsParams
from rlar.radiomics.standardise import Standardiser


def _features(image: torch.Tensor, mask: torch.Tensor, params: RadiomicsParams, item: str) -> np.ndarray | None:
    """The 13 features of one (1, H, W) image/mask pair of a batch, or None where the nodule cannot be measured."""
    grey = image.detach().to(torch.float64).squeeze(0).clamp_(0.0, 1.0).cpu().numpy()
    nodule = mask.detach().squeeze(0).cpu().numpy() > 0.5
    try:
        return extract_features(grey, nodule, params, item=item)
    except DataError:
        return None


class AugmentedTargets:
    """Shifts a batch's standardised radiomics targets by the feature change its augmentation made (module docstring).

    Called by the training dataset after batch augmentation as ``retarget(before, after)``: ``before`` is the
    collated, un-augmented batch and ``after`` the augmented one; returns ``after`` with ``radiomics`` and
    ``has_radiomics`` updated. Samples without a target are left as they are.
    """

    def __init__(self, standardiser: Standardiser | Mapping[str, Any], params: RadiomicsParams | None = None) -> None:
        if not isinstance(standardiser, Standardiser):
            standardiser = Standardiser.from_state_dict(dict(standardiser))
        if not standardiser.fitted or standardiser.std is None:
            raise ValueError("AugmentedTargets needs a fitted Standardiser (the training fold's)")
        self.params = params or RadiomicsParams()
        self.std = torch.tensor(standardiser.std, dtype=torch.float64)
        self._base: dict[str, np.ndarray | None] = {}

    def base_features(self, image_id: str, image: torch.Tensor, mask: torch.Tensor) -> np.ndarray | None:
        """f(x, m) of the un-augmented network input of ``image_id``, computed on first use."""
        if image_id not in self._base:
            self._base[image_id] = _features(image, mask, self.params, image_id)
        return self._base[image_id]

    def __call__(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(after)
        has = torch.as_tensor(after["has_radiomics"]).bool().clone()
        targets = torch.as_tensor(after["radiomics"]).clone()
        for b in has.nonzero().flatten().tolist():
            image_id = str(before["image_id"][b])
            base = self.base_features(image_id, before["image"][b], before["mask"][b])
            moved = None if base is None else _features(after["image"][b], after["mask"][b], self.params, image_id)
            if base is None or moved is None:
                has[b] = False
                continue
            shift = torch.from_numpy(moved - base) / self.std
            targets[b] = (targets[b].to(torch.float64) + shift).to(targets.dtype)
        out["radiomics"], out["has_radiomics"] = targets, has
        return out


__all__ = ["AugmentedTargets"]
