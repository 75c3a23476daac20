"""Torch dataset over a :class:`~rlar.data.sources.base.Source`: resized images, masks, labels, radiomics targets.

Geometry. Each image is scaled so that it fits ``image_size`` with its aspect ratio kept (MONAI ``Resize``:
``area`` interpolation for the image when shrinking, ``bilinear`` when enlarging, ``nearest`` for the mask)
and then zero-padded symmetrically to exactly ``image_size`` (MONAI ``SpatialPad``). Stretching to a square
would distort the shape descriptors TI-RADS scores (a taller-than-wide nodule could become wider-than-tall),
and the zero padding is the same black as the area outside an ultrasound fan. Segmentation metrics computed on these tensors are therefore in padded
network-resolution pixels.

Intensity. Images are kept in [0, 1] as the source decoded them (no per-image z-score): echogenicity is judged
relative to the surrounding thyroid and a z-score over a frame that is mostly black fan background mostly
measures how much background there is. Gain differences between machines are covered by the brightness and
contrast augmentation instead.

Augmentation (``augment=True``, training only; MONAI array transforms applied to image and mask together):
small rotation (+-10 degrees) and isotropic scaling (0.9-1.1), left-right flip (anatomically fine in transverse
views; vertical flips are *not* used because depth matters for posterior shadowing and taller-than-wide),
brightness shift, gamma contrast, and multiplicative speckle-like noise. Randomness is derived from
``(seed, epoch, index, visit)`` so that a run is reproducible independently of the DataLoader order and of the
number of worker processes; call :meth:`ThyroidDataset.set_epoch` at the start of every epoch (otherwise, with
worker processes that are re-created each epoch, every epoch would see the same augmentations). With
``persistent_workers=True`` the workers keep their own copy and do not see ``set_epoch``; augmentations then
still differ between epochs (a per-item visit counter), but are tied to the worker layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.transforms import (
    Affine,
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandFlipd,
    RandomizableTransform,
    RandShiftIntensityd,
    Resize,
    SpatialPad,
)
from torch.utils.data import Dataset

from rlar.data.labels import UNKNOWN, LabelSpace
from rlar.data.record import Sample, SampleInfo
from rlar.data.sources.base import Source
from rlar.errors import DataError

#: Length of the TI-RADS-aligned radiomics target vector (rlar.radiomics.FEATURE_NAMES); the data layer sits
#: below the radiomics layer, so the number is repeated here rather than imported.
RADIOMICS_DIM = 13

#: Keys of the batch dict built by :func:`collate` (docs/interfaces.md).
BATCH_KEYS: tuple[str, ...] = (
    "image",
    "mask",
    "has_mask",
    "label",
    "radiomics",
    "has_radiomics",
    "image_id",
    "patient_id",
)


class RandSpeckleNoised(RandomizableTransform, MapTransform):
    """Multiplicative speckle-like noise: ``image * (1 + sigma * N(0, 1))`` with sigma ~ U(0, ``max_sigma``).

    Ultrasound speckle is multiplicative (it scales with echo amplitude), unlike the additive Gaussian noise
    MONAI provides, so dark cystic regions stay dark. The result is clipped to [0, 1] by the caller.
    """

    def __init__(self, keys: Sequence[str] | str, prob: float = 0.5, max_sigma: float = 0.1) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.max_sigma = max_sigma
        self._sigma = 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._sigma = float(self.R.uniform(0.0, self.max_sigma))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        self.randomize()
        if not self._do_transform:
            return out
        for key in self.key_iterator(out):
            img = torch.as_tensor(out[key])
            noise = torch.as_tensor(self.R.standard_normal(tuple(img.shape)), dtype=img.dtype)
            out[key] = img * (1.0 + self._sigma * noise)
        return out


class RandIsotropicAffined(RandomizableTransform, MapTransform):
    """Random rotation and *isotropic* scaling of images (bilinear) and masks (``nearest_keys``) in one resampling.

    MONAI's ``RandAffine`` draws one scale factor per axis, which changes a nodule's height/width ratio (the
    taller-than-wide feature); here one factor is drawn for both axes and MONAI's ``Affine`` applies it,
    together with the rotation, so image and mask are resampled once on the same grid. Areas moved in from
    outside the frame are zero (reflection would mirror the nodule into fake ones at the border).
    """

    def __init__(
        self,
        keys: Sequence[str],
        prob: float = 0.8,
        max_rotation_deg: float = 10.0,
        scale_range: tuple[float, float] = (0.9, 1.1),
        nearest_keys: Sequence[str] = ("mask",),
    ) -> None:
        MapTransform.__init__(self, keys)
        self.nearest_keys = tuple(nearest_keys)
        RandomizableTransform.__init__(self, prob)
        self.max_rotation = float(np.deg2rad(max_rotation_deg))
        self.scale_range = scale_range
        self._angle, self._scale = 0.0, 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._angle = float(self.R.uniform(-self.max_rotation, self.max_rotation))
        self._scale = float(self.R.uniform(*self.scale_range))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        self.randomize()
        if not self._do_transform:
            return out
        for key in self.key_iterator(out):
            affine = Affine(
                rotate_params=self._angle,
                scale_params=(self._scale, self._scale),
                mode="nearest" if key in self.nearest_keys else "bilinear",  # nearest keeps masks binary
                padding_mode="zeros",
                image_only=True,
            )
            out[key] = affine(out[key])
        return out


def build_augmentation(seed: int = 0) -> Compose:
    """The training augmentation pipeline for dicts with channel-first ``image`` and ``mask`` (1, H, W)."""
    keys = ("image", "mask")
    pipeline = Compose(
        [
            RandIsotropicAffined(keys=keys, prob=0.8, max_rotation_deg=10.0, scale_range=(0.9, 1.1)),
            # Spatial axis 1 of a (C, H, W) tensor is W: a left-right flip. Axis 0 (depth) is never flipped.
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            RandShiftIntensityd(keys="image", offsets=0.05, prob=0.5),
            RandAdjustContrastd(keys="image", gamma=(0.8, 1.25), prob=0.5),
            RandSpeckleNoised(keys="image", prob=0.5, max_sigma=0.1),
        ]
    )
    pipeline.set_random_state(seed=seed)
    return pipeline


def fit_size(shape: tuple[int, int], image_size: tuple[int, int]) -> tuple[int, int]:
    """The largest (h, w) with the aspect ratio of ``shape`` that fits inside ``image_size`` (each side >= 1)."""
    scale = min(image_size[0] / shape[0], image_size[1] / shape[1])
    return (
        int(min(image_size[0], max(1, round(shape[0] * scale)))),
        int(min(image_size[1], max(1, round(shape[1] * scale)))),
    )


def _plain(tensor: Any) -> torch.Tensor:
    """MONAI returns MetaTensors; batches carry plain tensors so downstream code sees ordinary torch."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)


class ThyroidDataset(Dataset):
    """Items for training and evaluation from a data source.

    Args:
        source: an opened :class:`Source` (``source.infos`` metadata, ``source[i]`` decodes one sample).
        image_ids: the ids to serve, in this order (e.g. one fold's "train" list); None = every sample.
        image_size: (H, W) of the network input.
        label_space: maps ``info.tirads`` to a class index; None for segmentation-only use (every label -1).
        radiomics: standardised radiomics targets, index image_id, ``RADIOMICS_DIM`` columns in
            rlar.radiomics.FEATURE_NAMES order. A missing row or a non-finite value -> ``has_radiomics`` False.
        augment: apply the training augmentation (see module docstring).
        mask_key: take the mask from ``sample.extras[mask_key]`` instead of ``sample.mask`` (e.g. one simulated
            reader's mask from the phantom source). Other extras are ignored.
        seed: seed of the augmentation randomness.
        cache_in_memory: keep decoded and resized (pre-augmentation) arrays after the first access so later
            epochs do not decode files again. Each DataLoader worker process holds its own cache.

    Items are dicts with ``image`` (1, H, W) float32 in [0, 1], ``mask`` (1, H, W) float32 in {0, 1} (zeros when
    unannotated), ``has_mask`` bool, ``label`` int (-1 unknown), ``radiomics`` (RADIOMICS_DIM,) float32 (zeros
    when unknown), ``has_radiomics`` bool, ``image_id`` and ``patient_id`` str. Use :func:`collate` to batch.
    A sample that cannot be decoded raises the source's :class:`DataError`; what to do is the caller's choice.
    """

    def __init__(
        self,
        source: Source,
        image_ids: Sequence[str] | None = None,
        image_size: tuple[int, int] = (128, 128),
        label_space: LabelSpace | None = None,
        radiomics: pd.DataFrame | None = None,
        augment: bool = False,
        mask_key: str | None = None,
        seed: int = 0,
        cache_in_memory: bool = False,
    ) -> None:
        if len(image_size) != 2 or any(int(s) < 1 for s in image_size):
            raise ValueError(f"image_size must be (H, W) with positive sides, got {image_size}")
        self.source = source
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.label_space = label_space
        self.augment = augment
        self.mask_key = mask_key
        self.seed = int(seed)
        self.cache_in_memory = cache_in_memory
        self.epoch = 0

        position = {info.image_id: i for i, info in enumerate(source.infos)}
        if image_ids is None:
            image_ids = [info.image_id for info in source.infos]
        image_ids = [str(i) for i in image_ids]
        seen: set[str] = set()
        for image_id in image_ids:
            if image_id not in position:
                raise DataError(image_id, f"image id not found in source '{source.name}'")
            if image_id in seen:
                raise DataError(image_id, "image id listed twice; each image must appear once per dataset")
            seen.add(image_id)
        self.image_ids: list[str] = image_ids
        self._source_index = [position[i] for i in image_ids]
        self.infos: list[SampleInfo] = [source.infos[i] for i in self._source_index]
        # Labels come from metadata only, so a label problem surfaces here rather than mid-epoch.
        self.labels: np.ndarray = np.array([self._encode_label(info) for info in self.infos], dtype=np.int64)
        self._radiomics, self._has_radiomics = self._lookup_radiomics(radiomics)

        self._cache: dict[int, tuple[np.ndarray, np.ndarray, bool]] = {}
        self._visits: dict[int, int] = {}
        self._augmentation = build_augmentation(self.seed) if augment else None

    # ---------------------------------------------------------------------------------------------- set-up

    def _encode_label(self, info: SampleInfo) -> int:
        if self.label_space is None or info.tirads is None:
            return UNKNOWN
        scale = info.scale or self.source.scale
        if scale is not None and scale != self.label_space.scale:
            raise DataError(
                info.image_id,
                f"TI-RADS label '{info.tirads}' is on the {scale} scale but the label space uses the "
                f"{self.label_space.scale} scale; configure the label space with scale '{scale}'",
            )
        try:
            return self.label_space.encode(info.tirads)
        except DataError as err:
            raise DataError(info.image_id, f"TI-RADS label {err.reason}") from err

    def _lookup_radiomics(self, frame: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.image_ids)
        if frame is None:
            return np.zeros((n, RADIOMICS_DIM), dtype=np.float32), np.zeros(n, dtype=bool)
        if frame.shape[1] != RADIOMICS_DIM:
            raise DataError("radiomics", f"expected {RADIOMICS_DIM} feature columns, got {frame.shape[1]}")
        if frame.index.has_duplicates:
            duplicate = frame.index[frame.index.duplicated()][0]
            raise DataError(str(duplicate), "image id appears more than once in the radiomics table")
        frame = frame.copy()
        frame.index = frame.index.astype(str)
        rows = frame.reindex(self.image_ids).to_numpy(dtype=np.float64)
        has = np.isfinite(rows).all(axis=1)
        values = np.where(has[:, None], rows, 0.0).astype(np.float32)
        return values, has

    # ------------------------------------------------------------------------------------------- iteration

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation randomness of ``epoch`` (call once per epoch, before iterating)."""
        self.epoch = int(epoch)
        self._visits.clear()

    def __len__(self) -> int:
        return len(self.image_ids)

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Resized and padded (image (1,H,W) float32, mask (1,H,W) float32, has_mask)."""
        if index in self._cache:
            return self._cache[index]
        sample: Sample = self.source[self._source_index[index]]
        image = np.asarray(sample.image, dtype=np.float32)
        if image.ndim != 2:
            raise DataError(sample.image_id, f"expected a 2D grey image, got shape {image.shape}")
        if self.mask_key is not None:
            if self.mask_key not in sample.extras:
                raise DataError(
                    sample.image_id, f"mask_key '{self.mask_key}' not in sample extras {sorted(sample.extras)}"
                )
            mask = sample.extras[self.mask_key]
            mask = None if mask is None else np.asarray(mask).astype(bool)
            if mask is not None and mask.shape != image.shape:
                raise DataError(
                    sample.image_id, f"extras['{self.mask_key}'] shape {mask.shape} differs from image {image.shape}"
                )
        else:
            mask = sample.mask
        has_mask = mask is not None
        target = fit_size(image.shape, self.image_size)
        pad = SpatialPad(spatial_size=self.image_size, method="symmetric", mode="constant")
        # "area" averages when shrinking (no aliasing of speckle); it is blocky when enlarging, so use bilinear there.
        image_mode = "area" if target[0] <= image.shape[0] and target[1] <= image.shape[1] else "bilinear"
        image_out = _plain(pad(Resize(target, mode=image_mode)(image[None])))
        if has_mask:
            mask_out = _plain(pad(Resize(target, mode="nearest")(np.asarray(mask, dtype=np.float32)[None])))
        else:
            mask_out = torch.zeros((1, *self.image_size), dtype=torch.float32)
        result = (
            image_out.numpy().astype(np.float32, copy=False),
            (mask_out.numpy() > 0.5).astype(np.float32),
            has_mask,
        )
        if self.cache_in_memory:
            self._cache[index] = result
        return result

    def _augment(self, index: int, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._augmentation is not None
        visit = self._visits.get(index, 0)
        self._visits[index] = visit + 1
        # Per-item seed: reproducible whatever the loading order or worker layout, different each epoch/visit.
        item_seed = np.random.SeedSequence([self.seed, self.epoch, index, visit]).generate_state(1)[0]
        self._augmentation.set_random_state(seed=int(item_seed))
        out = self._augmentation({"image": torch.from_numpy(image.copy()), "mask": torch.from_numpy(mask.copy())})
        image_t = _plain(out["image"]).float().clamp_(0.0, 1.0)
        mask_t = (_plain(out["mask"]) > 0.5).float()
        return image_t, mask_t

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of {len(self)} images")
        image, mask, has_mask = self._decode(index)
        if self._augmentation is not None:
            image_t, mask_t = self._augment(index, image, mask)
        else:
            image_t, mask_t = torch.from_numpy(image.copy()), torch.from_numpy(mask.copy())
        info = self.infos[index]
        return {
            "image": image_t.contiguous(),
            "mask": mask_t.contiguous(),
            "has_mask": has_mask,
            "label": int(self.labels[index]),
            "radiomics": torch.from_numpy(self._radiomics[index].copy()),
            "has_radiomics": bool(self._has_radiomics[index]),
            "image_id": info.image_id,
            "patient_id": info.patient_id,
        }


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items into the batch dict of docs/interfaces.md (usable as a DataLoader collate_fn)."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    return {
        "image": torch.stack([item["image"] for item in items]).float(),
        "mask": torch.stack([item["mask"] for item in items]).float(),
        "has_mask": torch.tensor([bool(item["has_mask"]) for item in items], dtype=torch.bool),
        "label": torch.tensor([int(item["label"]) for item in items], dtype=torch.int64),
        "radiomics": torch.stack([torch.as_tensor(item["radiomics"]) for item in items]).float(),
        "has_radiomics": torch.tensor([bool(item["has_radiomics"]) for item in items], dtype=torch.bool),
        "image_id": [str(item["image_id"]) for item in items],
        "patient_id": [str(item["patient_id"]) for item in items],
    }
