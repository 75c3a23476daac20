"""The common sample record every data source produces, and the vocabulary its descriptors use.

Descriptor values are normalised to the ACR TI-RADS lexicon of :mod:`rlar.acr` (re-exported here), whatever the source wrote; a value the
source did not record is ``None`` (unknown), never a guessed class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlar.acr import DESCRIPTOR_VALUES, DESCRIPTORS

__all__ = ["DESCRIPTORS", "DESCRIPTOR_VALUES", "Sample", "SampleInfo", "Skip", "listing"]



@dataclass(frozen=True)
class SampleInfo:
    """Everything known about one image without decoding its pixels (cheap: used for indexing and splits)."""

    image_id: str
    patient_id: str
    source: str
    tirads: str | None = None  # on the source's own scale, canonical spelling: "2".."5","4a".. or "TR1".."TR5"
    scale: str | None = None  # "ddti" or "acr": the scale ``tirads`` is written on
    descriptors: dict[str, str | None] = field(default_factory=dict)
    has_mask: bool = False
    clip_id: str | None = None  # video sources only
    frame: int | None = None  # video sources only
    location: Any = None  # source-private handle used by the adapter to load pixels (path, hdf5 index, seed ...)
    # (row, column) pixel spacing in millimetres when the file declares it (DICOM PixelSpacing or ultrasound
    # region calibration); None means unknown, and physical measurements then stay in pixels.
    spacing_mm: tuple[float, float] | None = None


@dataclass
class Sample:
    """One decoded image with its annotations.

    image: float32 (H, W) grey values in [0, 1]. mask: bool (H, W) nodule mask, or None when not annotated.
    extras: source-specific additions (the phantom's ground truth and simulated readers' masks, ...).
    """

    info: SampleInfo
    image: np.ndarray
    mask: np.ndarray | None
    extras: dict[str, Any] = field(default_factory=dict)

    # Convenience pass-throughs so callers rarely need ``sample.info``.
    @property
    def image_id(self) -> str:
        return self.info.image_id

    @property
    def patient_id(self) -> str:
        return self.info.patient_id

    @property
    def tirads(self) -> str | None:
        return self.info.tirads

    @property
    def spacing_mm(self) -> tuple[float, float] | None:
        return self.info.spacing_mm


@dataclass(frozen=True)
class Skip:
    """An item a source could not use, and why. Summaries count these; nothing is dropped silently."""

    item: str
    reason: str


#: How many item names a source note spells out before summarising the rest with a count.
MAX_LISTED = 10


def listing(names: list[str], limit: int = MAX_LISTED) -> str:
    """``"a, b, c, ... (7 more)"``: item names for a human-readable note, truncated after ``limit``."""
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


class SkipLog(list[Skip]):
    """Ordered list of skips with a helper that records one."""

    def add(self, item: object, reason: str) -> None:
        self.append(Skip(str(item), reason))
