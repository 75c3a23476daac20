"""The evidence behind a prediction: nodule measurements and the 13 TI-RADS-aligned radiomics values.

Measurements (width, height, taller-than-wide) are in millimetres when the input declares its pixel spacing and
in pixels otherwise, and always say which: a taller-than-wide ratio in pixels is wrong when rows and columns have
different spacing. The radiomics values are measured on the *predicted* mask with the same extraction and settings
as the training targets (:func:`rlar.radiomics.extract_features`), each beside the ACR criterion it speaks to
(:data:`rlar.radiomics.FEATURES`), where it falls in the training distribution stored in the checkpoint, and the
network's own read-out of the same quantity from h_tirads. Nothing is made up: a percentile needs the training
distribution ("radiomics_reference" in the checkpoint), a z-score needs the standardiser, and a read-out needs a
model trained with radiomics guidance; each is None with the reason stated otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rlar.errors import DataError
from rlar.radiomics import FEATURE_NAMES, FEATURES, RadiomicsParams, Standardiser, extract_features
from rlar.radiomics.features import select_component


@dataclass(frozen=True)
class Measurements:
    """Extent of the nodule's largest connected region. ``unit`` is "mm" or "px"."""

    unit: str
    width: float
    height: float
    taller_than_wide: float  # height / width (anteroposterior over transverse extent)
    area: float  # unit squared
    spacing_mm: tuple[float, float] | None
    spacing_source: str
    note: str
    #: Every substantial region (at least :data:`REGION_FRACTION` of the largest one's area), largest first, each
    #: measured on its own: a side-by-side two-view image (DDTI) shows one nodule twice, and the union of both
    #: views is no nodule's size.
    regions: tuple[dict[str, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["spacing_mm"] = list(self.spacing_mm) if self.spacing_mm is not None else None
        out["regions"] = [dict(r) for r in self.regions]
        return out


#: Regions smaller than this fraction of the largest one are specks, not measured separately.
REGION_FRACTION = 0.2


def _extent(region: np.ndarray, spacing_mm: tuple[float, float] | None) -> dict[str, float]:
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    height, width, area = float(rows[-1] - rows[0] + 1), float(cols[-1] - cols[0] + 1), float(region.sum())
    if spacing_mm is not None:
        height, width, area = height * spacing_mm[0], width * spacing_mm[1], area * spacing_mm[0] * spacing_mm[1]
    return {"width": width, "height": height, "taller_than_wide": height / width, "area": area,
            "centre_row": float(rows.mean()), "centre_col": float(cols.mean())}


def measure(mask: np.ndarray, spacing_mm: tuple[float, float] | None, spacing_source: str = "none") -> Measurements | None:
    """Width/height/taller-than-wide of the largest region of ``mask``, and of every substantial region
    (``regions``); None when the mask is empty."""
    from scipy import ndimage as ndi

    if not mask.any():
        return None
    labels, n = ndi.label(mask.astype(bool), structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    order = [int(k) + 1 for k in np.argsort(-sizes, kind="stable") if sizes[k] >= REGION_FRACTION * sizes.max()]
    regions = tuple(_extent(labels == k, spacing_mm) for k in order) if n > 1 else ()
    region = select_component(mask.astype(bool), "largest")
    largest = _extent(region, spacing_mm)
    if spacing_mm is not None:
        row_mm, col_mm = spacing_mm
        unit, note = "mm", f"pixel spacing {row_mm:.4g} x {col_mm:.4g} mm (row x column) from {spacing_source}"
    else:
        unit, note = "px", ("no pixel spacing in the input: sizes are in pixels, and taller-than-wide assumes "
                            "square pixels")
    if len(regions) > 1:
        note += (f"; {len(regions)} separate regions predicted (e.g. the two views of a side-by-side image): each "
                 "is measured in 'regions', the headline values are the largest region's")
    return Measurements(unit, largest["width"], largest["height"], largest["taller_than_wide"], largest["area"],
                        spacing_mm, spacing_source, note, regions if len(regions) > 1 else ())


class RadiomicsReference:
    """The training distribution of each feature, to place a new value in it as a percentile.

    Accepted checkpoint formats (``checkpoint["radiomics_reference"]``): ``{"columns": [...], "values": N x 13}``
    (raw training values), ``{"columns": [...], "probs": [...], "quantiles": K x 13}`` (quantile table), or
    ``{feature: [values...]}``.
    """

    def __init__(self, samples: dict[str, np.ndarray] | None = None,
                 quantiles: tuple[np.ndarray, dict[str, np.ndarray]] | None = None) -> None:
        self.samples = samples or {}
        self.quantiles = quantiles

    @classmethod
    def from_checkpoint(cls, raw: Any) -> RadiomicsReference | None:
        if not isinstance(raw, dict) or not raw:
            return None
        if "columns" in raw and "values" in raw:
            values = np.asarray(raw["values"], dtype=np.float64)
            if values.ndim != 2 or values.shape[1] != len(raw["columns"]):
                return None
            return cls(samples={str(c): values[:, j] for j, c in enumerate(raw["columns"])})
        if "columns" in raw and "quantiles" in raw and "probs" in raw:
            table = np.asarray(raw["quantiles"], dtype=np.float64)
            probs = np.asarray(raw["probs"], dtype=np.float64)
            if table.ndim != 2 or table.shape != (len(probs), len(raw["columns"])):
                return None
            return cls(quantiles=(probs, {str(c): table[:, j] for j, c in enumerate(raw["columns"])}))
        if all(isinstance(v, list | tuple) for v in raw.values()):
            return cls(samples={str(k): np.asarray(v, dtype=np.float64) for k, v in raw.items()})
        return None

    def percentile(self, name: str, value: float) -> float | None:
        """Percent of training nodules at or below ``value`` (0-100), or None when the feature is not covered."""
        if name in self.samples:
            finite = self.samples[name][np.isfinite(self.samples[name])]
            return float(100.0 * np.mean(finite <= value)) if finite.size else None
        if self.quantiles is not None and name in self.quantiles[1]:
            probs, table = self.quantiles
            return float(100.0 * np.interp(value, table[name], probs))
        return None


@dataclass(frozen=True)
class EvidenceRow:
    """One radiomics feature of the predicted nodule."""

    name: str
    criterion: str
    family: str
    definition: str
    value: float
    percentile: float | None  # percent of training nodules at or below this value
    z_score: float | None  # (value - training mean) / training std, from the checkpoint's standardiser
    model_readout: float | None  # the network's h_tirads for this feature, de-standardised to feature units
    supervised: bool  # whether h_tirads was trained to match this feature


def model_readout(h_tirads: np.ndarray | None, standardiser: Standardiser | None) -> dict[str, float] | None:
    """h_tirads (13,) in feature units via the checkpoint's standardiser; None for models trained without guidance."""
    if h_tirads is None or standardiser is None:
        return None
    import pandas as pd

    frame = pd.DataFrame(np.asarray(h_tirads, dtype=np.float64)[None], columns=list(FEATURE_NAMES))
    values = standardiser.inverse_transform(frame).iloc[0]
    return {name: float(values[name]) for name in FEATURE_NAMES}


def radiomics_evidence(
    image: np.ndarray,
    mask: np.ndarray,
    params: RadiomicsParams,
    standardiser: Standardiser | None,
    reference: RadiomicsReference | None,
    readout: dict[str, float] | None,
    supervised: list[bool] | None = None,
    item: str = "image",
) -> list[EvidenceRow]:
    """The 13 evidence rows of one nodule; raises DataError when the mask cannot be measured (e.g. too small)."""
    values = extract_features(image, mask, params, item=item)
    supervised = supervised or [True] * len(FEATURE_NAMES)
    rows = []
    for j, spec in enumerate(FEATURES):
        value = float(values[j])
        z = None
        if standardiser is not None and standardiser.mean is not None and standardiser.std is not None:
            z = (value - standardiser.mean[j]) / standardiser.std[j]
        rows.append(EvidenceRow(
            name=spec.name, criterion=spec.criterion, family=spec.family, definition=spec.definition, value=value,
            percentile=reference.percentile(spec.name, value) if reference is not None else None,
            z_score=z, model_readout=readout.get(spec.name) if readout is not None else None,
            supervised=bool(supervised[j]) and readout is not None,
        ))
    return rows


def safe_evidence(*args: Any, **kwargs: Any) -> tuple[list[EvidenceRow], str | None]:
    """:func:`radiomics_evidence`, or no rows and the reason when the predicted mask cannot be measured."""
    try:
        return radiomics_evidence(*args, **kwargs), None
    except DataError as err:
        return [], f"radiomics evidence not computed: {err.reason}"
