"""Training augmentation applied to whole collated batches, with per-sample randomness keyed by image id.

Why batches. The dataset holds every decoded, resized image once (uint8); augmenting item by item through
MONAI dictionary transforms costs more CPU than the compact network's forward and backward at 128 px. Here the
random parameters are drawn per sample (a handful of scalars and, for speckle, one noise field), and the
transforms run as a few tensor operations on the (B, 1, H, W) batch: one ``affine_grid``/``grid_sample`` for
rotation, isotropic scaling and translation (image bilinear, mask bilinear then thresholded at 0.5, so both are
resampled on the same grid), an exact left-right flip, brightness, contrast, gamma and multiplicative speckle.

Why keyed by image id. A sample's parameters come from a generator seeded with a hash of (seed, epoch, image id,
occurrence of that id in the batch), so a run resumes bit-exactly and gives the same augmented images whatever
the batch composition, the loading order or the number of DataLoader workers.

Why a radiomics-target policy. The 13 radiomics targets are computed on the un-augmented image; rotation,
scaling, gamma, brightness and speckle move texture and echogenicity features by a large part of their dataset
SD (benchmarks/radiomics_augmentation.py, docs/data-pipeline.md), so a target kept as it is would ask the network
for texture it cannot see. A left-right flip leaves all 13 features unchanged (the GLCM averages its offsets over
angles that the flip permutes; shape features are mirror-invariant). :attr:`AugmentOptions.targets` decides:

- ``"augmented"`` (default): every sample gets the full augmentation, whether it carries a target or not, so
  every method sees the same augmented images for a seed; the targets are then shifted by the change the
  augmentation made to the features, measured on the network input (``rlar.radiomics.augmented``; the dataset
  needs that ``retarget`` function, which training passes in).
- ``"split"`` (the recipe before 2026-12-06, kept for the ablation that measured it): each sample with a target,
  with probability ``target_safe_fraction``, receives only target-preserving transforms and keeps its target;
  otherwise it receives the full augmentation and its target is switched off for that step. Guided methods then
  see about half the augmentation of unguided ones.
- ``"restrict"``: every sample with a target gets target-preserving transforms only.
- ``"ignore"``: full augmentation, targets kept although they no longer match.

The random draws never depend on the policy or on which samples carry a target: the policy only decides which of
the drawn transforms are switched off.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rlar.errors import config_error_from

#: The transforms, by the name of their on/off parameter.
TRANSFORMS: tuple[str, ...] = ("affine", "flip", "bright", "contrast", "gamma", "speckle")
#: Transforms that leave all 13 radiomics features unchanged (measured: benchmarks/radiomics_augmentation.py).
TARGET_PRESERVING: tuple[str, ...] = ("flip",)
#: Largest change of any radiomics feature, in dataset SDs, that a target-preserving transform may cause; the
#: tests check the shipped default against it.
TARGET_TOLERANCE_SD: float = 0.01

# Slots of the per-sample uniform draws; the order is fixed so a sample's parameters never depend on options
# that are switched off.
_SLOTS = ("safe", "flip", "affine", "angle", "scale", "tx", "ty", "bright", "bright_v", "contrast", "contrast_v",
          "gamma", "gamma_v", "speckle", "speckle_v")
_SLOT = {name: i for i, name in enumerate(_SLOTS)}


class AugmentOptions(BaseModel):
    """Options of the batch augmentation; defaults are the shipped training recipe.

    Probabilities are per sample. Geometry is in units of the network input: degrees, scale factors applied to
    both axes (isotropic: a per-axis factor would change the taller-than-wide ratio TI-RADS scores), translation
    as a fraction of the side. Vertical flips are never applied (depth matters for posterior shadowing).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    flip_prob: float = Field(default=0.5, ge=0.0, le=1.0, description="left-right flip")
    affine_prob: float = Field(default=0.8, ge=0.0, le=1.0, description="rotation + isotropic scale + translation")
    max_rotation_deg: float = Field(default=10.0, ge=0.0, le=180.0)
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_translate: float = Field(default=0.0, ge=0.0, le=0.5, description="largest shift, fraction of the side")
    brightness_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    max_brightness: float = Field(default=0.05, ge=0.0, le=1.0, description="additive offset ~ U(-m, m)")
    contrast_prob: float = Field(default=0.0, ge=0.0, le=1.0)
    contrast_range: tuple[float, float] = (0.9, 1.1)
    gamma_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    gamma_range: tuple[float, float] = (0.8, 1.25)
    speckle_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    max_speckle: float = Field(default=0.1, ge=0.0, le=1.0, description="x * (1 + sigma N(0,1)), sigma ~ U(0, m)")
    targets: Literal["augmented", "split", "restrict", "ignore"] = Field(
        default="augmented", description="how samples with a radiomics target are augmented and their targets "
        "kept in step with the input (module docstring)"
    )
    target_safe_fraction: float = Field(
        default=0.5, ge=0.0, le=1.0, description="'split': share of targeted samples kept target-preserving"
    )

    @field_validator("scale_range", "contrast_range", "gamma_range")
    @classmethod
    def _positive_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high:
            raise ValueError(f"must be (low, high) with 0 < low <= high, got ({low}, {high})")
        return value


def validate_augment_options(raw: Mapping[str, Any] | None, key: str = "data.augmentation") -> AugmentOptions:
    """:class:`AugmentOptions` from a plain dict; errors are :class:`ConfigError` naming ``key.field``."""
    try:
        return AugmentOptions.model_validate(dict(raw or {}))
    except pydantic.ValidationError as err:
        raise config_error_from(err, key, model=AugmentOptions) from None


def sample_seed(seed: int, epoch: int, image_id: str, occurrence: int = 0) -> int:
    """The generator seed of one sample's augmentation: a hash of the run seed, epoch, image id and occurrence."""
    key = f"{int(seed)}:{int(epoch)}:{occurrence}:{image_id}".encode("utf-8", "surrogateescape")  # ids from non-UTF-8 names
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class BatchAugmenter:
    """Augments a collated batch dict in place of MONAI per-item transforms (module docstring).

    ``augmenter(batch, epoch)`` returns a new batch dict: ``image`` and ``mask`` transformed, ``has_radiomics``
    possibly switched off for samples whose augmentation no longer matches their target, every other key as is.
    """

    def __init__(self, options: AugmentOptions | None = None, seed: int = 0) -> None:
        self.options = options or AugmentOptions()
        self.seed = int(seed)

    # -------------------------------------------------------------------------------------------- parameters
    def draw(self, image_ids: Sequence[str], epoch: int, has_target: torch.Tensor, shape: tuple[int, int]
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Per-sample parameters (float64/bool tensors of length B) and the speckle noise (B, 1, H, W) or None."""
        o = self.options
        n = len(image_ids)
        uniforms = torch.empty((n, len(_SLOTS)), dtype=torch.float64)
        noise: list[torch.Tensor | None] = []
        seen: dict[str, int] = {}
        for b, image_id in enumerate(image_ids):
            occurrence = seen.get(image_id, 0)
            seen[image_id] = occurrence + 1
            gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch, image_id, occurrence))
            uniforms[b] = torch.rand(len(_SLOTS), generator=gen, dtype=torch.float64)
            speckle = uniforms[b, _SLOT["speckle"]] < o.speckle_prob and o.max_speckle > 0
            noise.append(torch.randn((1, *shape), generator=gen) if speckle else None)
        u = {name: uniforms[:, i] for name, i in _SLOT.items()}

        has_target = has_target.bool().cpu()
        if o.targets == "restrict":
            safe = has_target.clone()
        elif o.targets == "split":
            safe = has_target & (u["safe"] < o.target_safe_fraction)
        else:  # "augmented", "ignore": every sample gets every drawn transform
            safe = torch.zeros(n, dtype=torch.bool)

        def active(name: str, prob: float) -> torch.Tensor:
            on = u[name] < prob
            return on if name in TARGET_PRESERVING else on & ~safe

        params = {
            "safe": safe,
            "flip": active("flip", o.flip_prob),
            "affine": active("affine", o.affine_prob),
            "angle": (2 * u["angle"] - 1) * math.radians(o.max_rotation_deg),
            "scale": o.scale_range[0] + u["scale"] * (o.scale_range[1] - o.scale_range[0]),
            "tx": (2 * u["tx"] - 1) * o.max_translate,
            "ty": (2 * u["ty"] - 1) * o.max_translate,
            "bright": active("bright", o.brightness_prob),
            "bright_v": (2 * u["bright_v"] - 1) * o.max_brightness,
            "contrast": active("contrast", o.contrast_prob),
            "contrast_v": o.contrast_range[0] + u["contrast_v"] * (o.contrast_range[1] - o.contrast_range[0]),
            "gamma": active("gamma", o.gamma_prob),
            "gamma_v": o.gamma_range[0] + u["gamma_v"] * (o.gamma_range[1] - o.gamma_range[0]),
            "speckle": active("speckle", o.speckle_prob) & (o.max_speckle > 0),
            "speckle_v": u["speckle_v"] * o.max_speckle,
        }
        stacked = None
        if any(x is not None for x in noise):
            zeros = torch.zeros((1, *shape))
            stacked = torch.stack([zeros if x is None else x for x in noise])
        return params, stacked

    # ------------------------------------------------------------------------------------------- transforms
    def __call__(self, batch: Mapping[str, Any], epoch: int) -> dict[str, Any]:
        image = batch["image"]
        if image.ndim != 4 or image.shape[1] != 1:
            raise ValueError(f"expected an image batch (B, 1, H, W), got shape {tuple(image.shape)}")
        shape = (int(image.shape[2]), int(image.shape[3]))
        has_target = batch.get("has_radiomics", torch.zeros(image.shape[0], dtype=torch.bool))
        p, noise = self.draw(list(batch["image_id"]), epoch, has_target, shape)
        image, mask = image.float(), batch["mask"].float()
        image, mask = apply_affine(image, mask, p["affine"], p["angle"], p["scale"], p["tx"], p["ty"])
        image, mask = apply_flip(image, p["flip"]), apply_flip(mask, p["flip"])
        image = apply_intensity(image, p, noise)
        out = dict(batch)
        out["image"], out["mask"] = image, mask
        if self.options.targets in ("split", "restrict") and "has_radiomics" in batch:
            unsafe = torch.stack([p[name] for name in TRANSFORMS if name not in TARGET_PRESERVING]).any(dim=0)
            out["has_radiomics"] = has_target.bool() & ~unsafe.to(has_target.device)
        return out


def _view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def _where(active: torch.Tensor) -> torch.Tensor | None:
    """Indices of the active samples, or None when there is none (transforms touch only these samples)."""
    index = active.nonzero().flatten()
    return index if index.numel() else None


def apply_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Left-right flip of the samples where ``flip`` (B,) is True; exact (no resampling)."""
    index = _where(flip)
    if index is None:
        return x
    index = index.to(x.device)
    out = x.clone()
    out[index] = x[index].flip(-1)
    return out


def affine_theta(angle: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
                 shape: tuple[int, int]) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices for a rotation by ``angle`` (radians) and zoom by ``scale`` about the
    centre followed by a shift of (tx, ty) fractions of the side, all in *pixel* geometry.

    ``affine_grid`` works in coordinates normalised to [-1, 1] per axis; on a non-square image a rotation written
    there would shear the content, so the pixel-space map A is conjugated by D = diag(W/2, H/2): D^-1 A D.
    The matrix maps output to input coordinates, hence the inverse rotation, 1/scale and the negated shift.
    """
    h, w = shape
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    ratio = h / w
    theta = torch.zeros((angle.shape[0], 2, 3), dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin * ratio
    theta[:, 1, 0], theta[:, 1, 1] = -sin / ratio, cos
    shift = torch.stack([2 * tx, 2 * ty], dim=1).to(torch.float64)  # D^-1 t in normalised units
    theta[:, :, 2] = -(theta[:, :, :2] @ shift.unsqueeze(-1)).squeeze(-1)
    return theta


def apply_affine(image: torch.Tensor, mask: torch.Tensor, active: torch.Tensor, angle: torch.Tensor,
                 scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample the active samples' image (bilinear) and mask (bilinear, then > 0.5) on one grid; zeros enter
    from outside the frame (reflection would mirror the nodule into fake ones at the border)."""
    index = _where(active)
    if index is None:
        return image, mask
    shape = (int(image.shape[2]), int(image.shape[3]))
    theta = affine_theta(angle[index], scale[index], tx[index], ty[index], shape).to(image)
    index = index.to(image.device)
    pair = torch.cat([image[index], mask[index]], dim=1)
    grid = F.affine_grid(theta, list(pair.shape), align_corners=False)
    moved = F.grid_sample(pair, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    image, mask = image.clone(), mask.clone()
    image[index] = moved[:, :1].clamp_(0.0, 1.0)
    mask[index] = (moved[:, 1:] > 0.5).to(mask.dtype)
    return image, mask


def apply_intensity(image: torch.Tensor, p: Mapping[str, torch.Tensor], noise: torch.Tensor | None) -> torch.Tensor:
    """Brightness shift, contrast about the image mean, gamma, then multiplicative speckle; clipped to [0, 1].

    Each transform is computed on its active samples only; the others pass through untouched (bit-exact).
    """
    x = image.clone()
    if (index := _where(p["bright"])) is not None:
        x[index] = (x[index] + _view(p["bright_v"][index], x)).clamp_(0.0, 1.0)
    if (index := _where(p["contrast"])) is not None:
        sub = x[index]
        mean = sub.mean(dim=(1, 2, 3), keepdim=True)
        x[index] = ((sub - mean) * _view(p["contrast_v"][index], x) + mean).clamp_(0.0, 1.0)
    if (index := _where(p["gamma"])) is not None:
        x[index] = x[index].clamp_(0.0, 1.0).pow_(_view(p["gamma_v"][index], x))
    if noise is not None and (index := _where(p["speckle"])) is not None:
        x[index] = (x[index] * (1.0 + _view(p["speckle_v"][index], x) * noise[index].to(x))).clamp_(0.0, 1.0)
    return x


__all__ = [
    "TARGET_PRESERVING",
    "TARGET_TOLERANCE_SD",
    "TRANSFORMS",
    "AugmentOptions",
    "BatchAugmenter",
    "affine_theta",
    "apply_affine",
    "apply_flip",
    "apply_intensity",
    "sample_seed",
    "validate_augment_options",
]
