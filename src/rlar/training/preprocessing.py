"""What a network was trained on, stored with its checkpoint so every consumer feeds it the same input.

A model is only meaningful on inputs prepared as its training images were: the scan-area crop (policy and
parameters), the network size, the intensity handling and the label space. :class:`Preprocessing` records them;
:func:`rlar.training.checkpoint.save_checkpoint` stores it under ``preprocessing`` in every checkpoint, and
``rlar predict``, ``rlar serve``, ``rlar evaluate`` on any source, ``rlar export`` (in its sidecar) and the report's
overlay figure read it back (:func:`preprocessing_of`). Checkpoints written before this key existed get it derived
from their resolved config, which is what their training did. Torch-free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rlar.data.crop import CropParams

PREPROCESSING_VERSION = 1

#: Fixed steps of rlar's image -> network mapping (rlar.data.dataset.prepare_image), documented in every record.
INTENSITY = ("grey float in [0, 1] (colour: mean of the channels; integer data scaled by its bit depth), "
             "8-bit quantisation after resizing")
RESIZE = ("aspect-preserving resize to fit the network size ('area' when shrinking, 'bilinear' when enlarging), "
          "symmetric zero padding")


@dataclass(frozen=True)
class Preprocessing:
    """The input a network expects (see the module docstring).

    crop: whether the scan area is detected and cropped to (``rlar.data.crop.scan_area_box`` on the pixels
        alone: never from a reference mask) before resizing.
    crop_params: the detection's parameters (:class:`rlar.data.crop.CropParams`).
    image_size: (H, W) of the network input.
    label_space: ``{"scale", "task", "classes"}`` of the classifier.
    trained_on: the training source's name.
    """

    crop: bool
    image_size: tuple[int, int]
    crop_params: CropParams = field(default_factory=CropParams)
    label_space: dict[str, Any] = field(default_factory=dict)
    trained_on: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (a checkpoint loads with ``weights_only=True``, a JSON sidecar needs no rlar)."""
        return {
            "version": PREPROCESSING_VERSION,
            "crop": "scan_area" if self.crop else "none",
            "crop_params": dataclasses.asdict(self.crop_params),
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "intensity": INTENSITY,
            "resize": RESIZE,
            "label_space": dict(self.label_space),
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Read :meth:`to_dict`'s output; ValueError naming the bad entry."""
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing record is not a mapping: {data!r}")
        version = int(data.get("version", 0))
        if version > PREPROCESSING_VERSION:
            raise ValueError(f"preprocessing record version {version} is newer than this rlar's "
                             f"({PREPROCESSING_VERSION})")
        crop = data.get("crop")
        if crop not in ("scan_area", "none"):
            raise ValueError(f"preprocessing 'crop' must be 'scan_area' or 'none', got {crop!r}")
        size = data.get("image_size")
        if not (isinstance(size, list | tuple) and len(size) == 2 and all(int(s) > 0 for s in size)):
            raise ValueError(f"preprocessing 'image_size' must be two positive integers, got {size!r}")
        params = data.get("crop_params") or {}
        known = {f.name for f in dataclasses.fields(CropParams)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"preprocessing 'crop_params' has unknown keys {unknown}")
        return cls(crop=crop == "scan_area", image_size=(int(size[0]), int(size[1])),
                   crop_params=CropParams(**params), label_space=dict(data.get("label_space") or {}),
                   trained_on=str(data.get("trained_on", "")))

    def describe(self) -> str:
        """One line for terminals and reports."""
        crop = "scan-area crop" if self.crop else "no crop"
        return f"{crop}, {self.image_size[0]}x{self.image_size[1]} input, grey [0, 1], 8-bit"


def _crop_params(options: dict[str, Any]) -> CropParams:
    raw = options.get("crop_params")
    if isinstance(raw, CropParams):
        return raw
    if isinstance(raw, dict):
        return CropParams(**raw)
    return CropParams()


def preprocessing_from_config(config: dict[str, Any], label_space: dict[str, Any] | None = None) -> Preprocessing:
    """What training with the resolved ``config`` (a plain dict, as in ``config.yaml``) fed the network.

    The crop is the training source's validated ``crop`` option (its own default when unset), as
    :class:`rlar.data.dataset.ThyroidDataset` saw it; sources without that option do not crop.
    """
    from rlar.data.sources import get_source_class, validate_source_options
    from rlar.errors import ConfigError

    data = config.get("data") or {}
    source = str(data.get("source", ""))
    options = dict(data.get("options") or {})
    crop = False
    try:
        fields = get_source_class(source).options_model().model_fields
    except ConfigError:
        fields = {}
    if "crop" in fields:
        given = {"crop": options["crop"]} if "crop" in options else {}
        crop = bool(validate_source_options(source, given).model_dump()["crop"])
    size = data.get("image_size", [128, 128])
    if isinstance(size, int):
        size = [size, size]
    space = dict(label_space or {})
    if space.get("scale"):
        from rlar.data.labels import LabelSpace

        space["classes"] = list(LabelSpace(space["scale"], space.get("task", "multiclass")).class_names)
    return Preprocessing(crop=crop, image_size=(int(size[0]), int(size[1])), crop_params=_crop_params(options),
                         label_space=space, trained_on=source)


def preprocessing_of(checkpoint: dict[str, Any]) -> Preprocessing:
    """The preprocessing a checkpoint stores, or (older checkpoints) the one its config implies."""
    stored = checkpoint.get("preprocessing")
    if stored:
        return Preprocessing.from_dict(stored)
    return preprocessing_from_config(checkpoint.get("config") or {}, checkpoint.get("label_space"))


__all__ = ["PREPROCESSING_VERSION", "Preprocessing", "preprocessing_from_config", "preprocessing_of"]
