"""Settings of the 13-feature radiomics extraction, validated when the object is built.

Every setting that changes a feature value lives here, so that ``params.to_json()`` (together with
``FEATURES_VERSION``) fully identifies a set of cached targets.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rlar.data.sources.masks import MIN_MASK_EXTENT, MIN_MASK_PIXELS


class RadiomicsParams(BaseModel):
    """Parameters of :func:`rlar.radiomics.extract_features`.

    Pixel units are image pixels; where a sample declares its pixel spacing (DICOM), the taller-than-wide ratio
    is measured in millimetres (see docs/radiomics.md). Grey units are the [0, 1] scale of
    :class:`rlar.data.record.Sample` images. Invalid values raise ``pydantic.ValidationError`` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ring_width: int = Field(
        default=10,
        ge=1,
        le=256,
        description="Width in pixels of the perinodular parenchyma ring: dilation of the mask by a disk of this "
        "radius, minus the mask. Echogenicity and bright foci are measured relative to this ring.",
    )
    component: Literal["largest", "all"] = Field(
        default="largest",
        description="'largest': keep only the largest 8-connected region of the mask (DDTI often annotates the "
        "same nodule twice in side-by-side panes; shape of the union is meaningless). 'all': use the mask as is.",
    )
    bin_width: float | None = Field(
        default=1.0 / 32.0,
        gt=0.0,
        le=1.0,
        description="Fixed grey-level bin width for entropy and GLCM (pyradiomics 'binWidth'), on the [0, 1] scale. "
        "Set to None to use bin_count instead.",
    )
    bin_count: int | None = Field(
        default=None,
        ge=2,
        le=1024,
        description="Fixed number of grey-level bins over the nodule's own range (pyradiomics 'binCount'). "
        "Mutually exclusive with bin_width.",
    )
    glcm_distances: tuple[int, ...] = Field(
        default=(1,),
        description="GLCM offsets, as Chebyshev (chessboard) distances like pyradiomics 'distances': distance d "
        "uses every offset (dr, dc) with max(|dr|, |dc|) = d in one half-plane (symmetric GLCM).",
    )
    smoothing_sigma: float = Field(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="Gaussian sigma (pixels) applied before the cystic threshold and the gradient of the margin "
        "sharpness, to suppress speckle. 0 disables smoothing.",
    )
    cystic_ratio: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="A nodule pixel counts as anechoic/cystic when its smoothed grey value is below this fraction "
        "of the ring's median grey value.",
    )
    bright_percentile: float = Field(
        default=99.0,
        gt=0.0,
        lt=100.0,
        description="A nodule pixel counts as an echogenic focus when brighter than this percentile of the ring.",
    )

    min_nodule_pixels: int = Field(
        default=MIN_MASK_PIXELS,
        ge=1,
        description="Fewest pixels the measured nodule (after 'component') may have; a smaller mask is a recorded "
        "skip for the radiomics target (a 1-3 pixel mask gives a constant, meaningless feature row).",
    )
    min_nodule_extent: int = Field(
        default=MIN_MASK_EXTENT,
        ge=1,
        description="Fewest rows and columns the measured nodule's bounding box must span; a line or a sliver is a "
        "recorded skip for the radiomics target.",
    )

    @field_validator("glcm_distances", mode="before")
    @classmethod
    def _distances_as_tuple(cls, value: object) -> object:
        # Accept lists from YAML/JSON; the frozen model stores a tuple so it stays hashable.
        return tuple(value) if isinstance(value, list) else value

    @field_validator("glcm_distances")
    @classmethod
    def _check_distances(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("needs at least one distance")
        if any(d < 1 for d in value):
            raise ValueError(f"distances must be >= 1 pixel, got {list(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"distances must be unique, got {list(value)}")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _one_binning(self) -> RadiomicsParams:
        if (self.bin_width is None) == (self.bin_count is None):
            raise ValueError(
                "set exactly one of bin_width / bin_count "
                f"(got bin_width={self.bin_width}, bin_count={self.bin_count}); "
                "to use bin_count pass bin_width=None"
            )
        return self

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) used as cache provenance."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def pyradiomics_settings(self) -> dict[str, object]:
        """The pyradiomics settings that reproduce our discretisation and GLCM offsets (for cross-checks)."""
        settings: dict[str, object] = {
            "force2D": True,
            "force2Ddimension": 0,
            "distances": list(self.glcm_distances),
            "symmetricalGLCM": True,
        }
        if self.bin_count is not None:
            settings["binCount"] = self.bin_count
        else:
            settings["binWidth"] = self.bin_width
        return settings
