"""Torch dataset over a :class:`~rlar.data.sources.base.Source`: resized images, masks, labels, radiomics targets.

Geometry. Each image is scaled so that it fits ``image_size`` with its aspect ratio kept (MONAI ``Resize``:
``area`` interpolation for the image when shrinking, ``bilinear`` when enlarging, ``nearest`` for the mask)
and then zero-padded symmetrically to exactly ``image_size`` (MONAI ``SpatialPad``). Stretching to a square
would distort the shape descriptors TI-RADS scores (a taller-than-wide nodule could become wider-than-tall),
and the zero padding is the same black as the area outside an ultrasound fan. Segmentation metrics computed on
these tensors are therefore in padded network-resolution pixels.

Intensity. Images are kept in [0, 1] as the source decoded them (no per-image z-score): echogenicity is judged
relative to the surrounding thyroid and a z-score over a frame that is mostly black fan background mostly
measures how much background there is. Gain differences between machines are covered by the brightness and
contrast augmentation instead. After resizing, grey values are quantised to 8 bits (the depth of the JPEG/PNG
files they come from), with or without the cache, so results never depend on caching.

Cache (``cache_in_memory=True``, the default). Every image is decoded, cropped, resized and padded once, at
construction, into one (N, 1, H, W) uint8 tensor (masks likewise, 0/1): a DDTI fold at 128 px is ~8 MB. No epoch
decodes a file again. Images that cannot be decoded are dropped then, with their reason in :attr:`skipped`,
instead of crashing a run mid-epoch. ``cache_in_memory=False`` decodes lazily on every access (for sources too
large for memory); a decode failure then raises the source's :class:`DataError` at access time.

Augmentation (``augment=True``, training only) runs on whole batches in :attr:`ThyroidDataset.collate_fn`
(rlar.data.augment: rotation, isotropic scale, translation, left-right flip, brightness, contrast, gamma,
speckle). Items from ``dataset[i]`` are never augmented. The randomness is a function of (seed, epoch, image id),
so a run is reproducible whatever the DataLoader order and number of worker processes; call
:meth:`ThyroidDataset.set_epoch` at the start of every epoch. Worker processes copy the dataset when the
DataLoader iterator is created, so use ``persistent_workers=False`` (a persistent worker keeps the epoch it
started with and would repeat its augmentations every epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.transforms import Resize, SpatialPad
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from rlar.data.augment import AugmentOptions, BatchAugmenter, validate_augment_options
from rlar.data.labels import UNKNOWN, LabelSpace
from rlar.data.record import Sample, SampleInfo, Skip
from rlar.data.sources.base import Source
from rlar.errors import DataError
from rlar.tasks import RADIOMICS_DIM, TASKS, Batch, TaskSpec

#: The tasks whose target is a descriptor of the sample record (the ACR descriptor tasks). Items and batches of a
#: source that records a descriptor carry the task's class index under its target key, -1 where the reader
#: recorded nothing (DDTI: composition, echogenicity, margin and echogenic_foci; never shape).
DESCRIPTOR_TASKS: tuple[TaskSpec, ...] = tuple(spec for spec in TASKS.values() if spec.descriptor is not None)
#: Keys every batch built by :func:`collate` has (the :class:`rlar.tasks.Batch` contract); the descriptor task
#: targets come on top where the source records the descriptor.
BATCH_KEYS: tuple[str, ...] = tuple(Batch.__annotations__)

#: One decoded item: (image (1, H, W) uint8, mask (1, H, W) uint8 in {0, 1}, has_mask).
Decoded = tuple[torch.Tensor, torch.Tensor, bool]


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


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 grey levels (rounded); the inverse is ``x / 255``."""
    return (image.clamp(0.0, 1.0) * 255.0).round_().to(torch.uint8)


@dataclass(frozen=True)
class Placement:
    """Where an image landed in the network input: its resized (h, w) and the (top, left) zero padding."""

    resized_shape: tuple[int, int]
    pad: tuple[int, int]


def prepare_image(
    image: np.ndarray, mask: np.ndarray | None, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None, Placement]:
    """One grey image (H0, W0) in [0, 1] (and its mask) as the network sees it, and where it was placed.

    The one image -> network-input mapping, shared by training (:class:`ThyroidDataset`) and prediction
    (:mod:`rlar.inference.geometry`), so a model is never fed a differently resized image than it learned on:
    aspect-preserving resize to :func:`fit_size` ("area" when shrinking, "bilinear" when enlarging, "nearest" for
    the mask), symmetric zero padding to ``image_size`` and 8-bit quantisation. Returns (image uint8 (1, H, W),
    mask uint8 (1, H, W) in {0, 1} or None, :class:`Placement`).
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"expected a non-empty 2D grey image, got shape {image.shape}")
    size = (int(image_size[0]), int(image_size[1]))
    target = fit_size((int(image.shape[0]), int(image.shape[1])), size)
    pad = SpatialPad(spatial_size=size, method="symmetric", mode="constant")
    # "area" averages when shrinking (no aliasing of speckle); it is blocky when enlarging, so use bilinear there.
    image_mode = "area" if target[0] <= image.shape[0] and target[1] <= image.shape[1] else "bilinear"
    image_out = to_uint8(_plain(pad(Resize(target, mode=image_mode)(torch.from_numpy(image)[None]))).float())
    mask_out = None
    if mask is not None:
        mask_array = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None]
        mask_out = (_plain(pad(Resize(target, mode="nearest")(mask_array))) > 0.5).to(torch.uint8)
    # SpatialPad "symmetric" puts the odd pixel after the image: the leading pad is the floor of half the slack.
    placement = Placement(target, ((size[0] - target[0]) // 2, (size[1] - target[1]) // 2))
    return image_out, mask_out, placement


def _check_grey(sample: Sample) -> np.ndarray:
    """The sample's image as float32 (H, W); a DataError naming the image if it is not 2D grey."""
    image = np.asarray(sample.image, dtype=np.float32)
    if image.ndim != 2:
        raise DataError(sample.image_id, f"expected a 2D grey image, got shape {image.shape}")
    return image


class ThyroidDataset(Dataset):
    """Items for training and evaluation from a data source.

    Args:
        source: an opened :class:`Source` (``source.infos`` metadata, ``source[i]`` decodes one sample).
        image_ids: the ids to serve, in this order (e.g. one fold's "train" list); None = every sample.
        image_size: (H, W) of the network input.
        label_space: maps ``info.tirads`` to a class index; None for segmentation-only use (every label -1).
        radiomics: standardised radiomics targets, index image_id, ``RADIOMICS_DIM`` columns in
            rlar.radiomics.FEATURE_NAMES order. A missing row or a non-finite value -> ``has_radiomics`` False.
        augment: augment batches built by :attr:`collate_fn` (see module docstring).
        mask_key: take the mask from ``sample.extras[mask_key]`` instead of ``sample.mask`` (e.g. one simulated
            reader's mask from the phantom source). Other extras are ignored.
        seed: seed of the augmentation randomness.
        cache_in_memory: decode everything once at construction into uint8 tensors (module docstring).
        augmentation: :class:`~rlar.data.augment.AugmentOptions` (or a dict of them) used when ``augment``;
            None = the shipped defaults.
        retarget: ``retarget(before, after) -> after`` run on each augmented batch, given the batch before and
            after augmentation: keeps the radiomics targets in step with the augmented input (training passes
            :class:`rlar.radiomics.augmented.AugmentedTargets`). Required when the policy
            ``augmentation.targets`` is ``"augmented"`` and some image has a radiomics target.
        progress: show a progress bar while decoding at construction.

    Items are dicts with ``image`` (1, H, W) float32 in [0, 1], ``mask`` (1, H, W) float32 in {0, 1} (zeros when
    unannotated), ``has_mask`` bool, ``label`` int (-1 unknown), ``radiomics`` (RADIOMICS_DIM,) float32 (zeros
    when unknown), ``has_radiomics`` bool, ``image_id`` and ``patient_id`` str, and for each descriptor task the
    source records (:attr:`descriptor_tasks`) its class index under the task name (-1 unknown). Batch them with
    :attr:`collate_fn` (training) or :func:`collate` (no augmentation).
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
        cache_in_memory: bool = True,
        *,
        augmentation: AugmentOptions | Mapping[str, Any] | None = None,
        retarget: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] | None = None,
        progress: bool = False,
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
        options = augmentation if isinstance(augmentation, AugmentOptions) else validate_augment_options(augmentation)
        self.augmenter: BatchAugmenter | None = BatchAugmenter(options, self.seed) if augment else None
        #: Images dropped at construction because they could not be decoded, with the reason.
        self.skipped: list[Skip] = []

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

        #: The descriptor tasks whose descriptor the source records for at least one image (of any split, so every
        #: split of a run carries the same batch keys).
        self.descriptor_tasks: tuple[TaskSpec, ...] = tuple(
            spec for spec in DESCRIPTOR_TASKS if any(info.descriptors.get(spec.descriptor or "") for info in source.infos)
        )
        self._images: torch.Tensor | None = None
        self._masks: torch.Tensor | None = None
        self._has_mask: list[bool] = []
        self._set_items(image_ids, position)  # label errors surface before any pixel is decoded
        if cache_in_memory:
            kept = self._decode_all(image_ids, position, progress)
            if len(kept) < len(image_ids):
                self._set_items(kept, position)
        self._radiomics, self._has_radiomics = self._lookup_radiomics(radiomics)
        self.retarget = retarget
        if augment and options.targets == "augmented" and retarget is None and bool(self._has_radiomics.any()):
            raise ValueError("augmentation.targets 'augmented' shifts radiomics targets with the augmentation: pass "
                             "retarget=rlar.radiomics.AugmentedTargets(...), or choose another targets policy")

    # ---------------------------------------------------------------------------------------------- set-up

    def _set_items(self, image_ids: list[str], position: Mapping[str, int]) -> None:
        self.image_ids: list[str] = image_ids
        self._source_index = [position[i] for i in image_ids]
        self.infos: list[SampleInfo] = [self.source.infos[i] for i in self._source_index]
        # Labels come from metadata only, so a label problem surfaces here rather than mid-epoch.
        self.labels: np.ndarray = np.array([self._encode_label(info) for info in self.infos], dtype=np.int64)
        #: Descriptor task name -> (N,) int64 class index in ``TaskSpec.classes``, -1 unknown.
        self.task_labels: dict[str, np.ndarray] = {
            spec.name: np.array([descriptor_index(spec, info) for info in self.infos], dtype=np.int64)
            for spec in self.descriptor_tasks
        }

    def _decode_all(self, image_ids: list[str], position: Mapping[str, int], progress: bool) -> list[str]:
        """Decode every image once into the uint8 cache; returns the ids kept (failures go to ``skipped``)."""
        kept: list[str] = []
        images: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for image_id in tqdm(image_ids, desc=f"decoding {self.source.name}", disable=not progress, leave=False):
            try:
                sample = self.source[position[image_id]]
                _check_grey(sample)
            except DataError as err:
                self.skipped.append(Skip(image_id, str(err)))
                continue
            image, mask, has_mask = self._prepare(sample)  # a bad mask_key raises: a setting, not an image
            kept.append(image_id)
            images.append(image)
            masks.append(mask)
            self._has_mask.append(has_mask)
        if image_ids and not kept:
            reasons = "; ".join(f"{s.item}: {s.reason}" for s in self.skipped[:3])
            raise DataError(self.source.name, f"none of the {len(image_ids)} images could be decoded ({reasons})")
        empty = torch.zeros((0, 1, *self.image_size), dtype=torch.uint8)
        self._images = torch.stack(images) if images else empty
        self._masks = torch.stack(masks) if masks else empty.clone()
        return kept

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

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def cached_images(self) -> torch.Tensor | None:
        """The (N, 1, H, W) uint8 image cache (None without ``cache_in_memory``); read-only by convention."""
        return self._images

    @property
    def cached_masks(self) -> torch.Tensor | None:
        """The (N, 1, H, W) uint8 0/1 mask cache (zeros for unannotated images), or None."""
        return self._masks

    def _prepare(self, sample: Sample) -> Decoded:
        """Resize and pad one decoded sample: (image uint8 (1,H,W), mask uint8 (1,H,W) in {0,1}, has_mask)."""
        image = _check_grey(sample)
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
        image_out, mask_out, _ = prepare_image(image, mask, self.image_size)
        if mask_out is None:
            return image_out, torch.zeros((1, *self.image_size), dtype=torch.uint8), False
        return image_out, mask_out, True

    def _decoded(self, index: int) -> Decoded:
        if self._images is not None and self._masks is not None:
            return self._images[index], self._masks[index], self._has_mask[index]
        sample: Sample = self.source[self._source_index[index]]
        return self._prepare(sample)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of {len(self)} images")
        image, mask, has_mask = self._decoded(index)
        info = self.infos[index]
        return {
            "image": image.float().div_(255.0),
            "mask": mask.float(),
            "has_mask": has_mask,
            "label": int(self.labels[index]),
            "radiomics": torch.from_numpy(self._radiomics[index].copy()),
            "has_radiomics": bool(self._has_radiomics[index]),
            "image_id": info.image_id,
            "patient_id": info.patient_id,
        } | {spec.target_keys[0]: int(self.task_labels[spec.name][index]) for spec in self.descriptor_tasks}

    @property
    def collate_fn(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        """The DataLoader ``collate_fn`` for this dataset: :func:`collate`, plus batch augmentation if ``augment``."""
        return collate if self.augmenter is None else self._collate_augmented

    def _collate_augmented(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        assert self.augmenter is not None
        before = collate(items)
        after = self.augmenter(before, self.epoch)
        if self.retarget is not None and self.augmenter.options.targets == "augmented":
            after = self.retarget(before, after)
        return after


def descriptor_index(spec: TaskSpec, info: SampleInfo) -> int:
    """The class index of ``info``'s descriptor for task ``spec`` in ``spec.classes``; -1 when it is not recorded.

    Descriptors are already in the canonical vocabulary (the sources normalise them, rlar.data.descriptors), so a
    value outside ``spec.classes`` is a source bug: a DataError naming the image."""
    value = info.descriptors.get(spec.descriptor or "")
    if value is None:
        return UNKNOWN
    if value not in spec.classes:
        raise DataError(info.image_id, f"{spec.descriptor} '{value}' is not one of {', '.join(spec.classes)}")
    return spec.classes.index(value)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items into the batch dict of docs/interfaces.md (usable as a DataLoader collate_fn).

    A descriptor task's key is in the batch when some item has it; an item without it counts as unlabelled (-1)."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    descriptor_keys = [key for key in (spec.target_keys[0] for spec in DESCRIPTOR_TASKS) if any(key in i for i in items)]
    return {
        "image": torch.stack([item["image"] for item in items]).float(),
        "mask": torch.stack([item["mask"] for item in items]).float(),
        "has_mask": torch.tensor([bool(item["has_mask"]) for item in items], dtype=torch.bool),
        "label": torch.tensor([int(item["label"]) for item in items], dtype=torch.int64),
        "radiomics": torch.stack([torch.as_tensor(item["radiomics"]) for item in items]).float(),
        "has_radiomics": torch.tensor([bool(item["has_radiomics"]) for item in items], dtype=torch.bool),
        "image_id": [str(item["image_id"]) for item in items],
        "patient_id": [str(item["patient_id"]) for item in items],
    } | {key: torch.tensor([int(item.get(key, UNKNOWN)) for item in items], dtype=torch.int64)
         for key in descriptor_keys}


__all__ = [
    "BATCH_KEYS",
    "DESCRIPTOR_TASKS",
    "RADIOMICS_DIM",
    "Placement",
    "ThyroidDataset",
    "collate",
    "descriptor_index",
    "fit_size",
    "prepare_image",
    "to_uint8",
]
