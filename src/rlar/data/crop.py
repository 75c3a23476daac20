"""Deterministic detection of the ultrasound scan area, so burned-in scanner text never reaches the model.

Ultrasound screenshots (DDTI: 560x360) frame the B-mode scan with a black margin holding scanner text
(frequency, depth, gain), a grey-scale bar, depth-marker dots, body-marker pictograms and, on some DDTI
images, the reader's own notes -- e.g. "TIRADS 4A (4B*)" under the scan, which would leak the label.

Rule (no learning, same input -> same box):

1. Smooth the grey image with a ``smooth`` x ``smooth`` box filter and call a pixel *non-dark* when the
   smoothed value exceeds ``dark``. The margin is pure black (0) on scanner screenshots, while even the
   dimmest deep tissue has speckle; smoothing bridges speckle zeros inside the scan.
2. Suppress small bright connected components (8-connected, at most ``min_component_fraction`` of the image):
   text glyphs, dots, pictograms and the grey-scale bar are small; the scan area is one large component
   (or a few large ones for dual-pane images).
3. Columns: a column belongs to the scan if its non-dark fraction is at least ``band_fraction`` x the best
   column's. Runs separated by at most ``max_gap`` columns are merged (dual-pane images have a dark seam
   between panes), and the longest run is kept. Rows: the same rule, computed inside the chosen columns.
4. Fallback: the full image when nothing is detected or the box covers less than ``min_area_fraction`` of
   the image (a mostly black frame is more likely a detection failure than a tiny scan).

Boxes are ``(top, bottom, left, right)`` with half-open ends: the scan is ``image[top:bottom, left:right]``.
:func:`crop_with_mask` unions the box with the mask's bounding box, so an annotation drawn partly outside
the detected scan is never cut; it reports how many mask pixels lay outside the detected scan area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology

Box = tuple[int, int, int, int]  # (top, bottom, left, right), half-open


@dataclass(frozen=True)
class CropParams:
    """Parameters of :func:`scan_area_box`; defaults were checked on every DDTI image (see module docstring)."""

    dark: float = 0.02  # smoothed grey level (in [0,1]) above which a pixel is "non-dark" (~5/255)
    smooth: int = 5  # box-filter width (pixels) applied before thresholding
    min_component_fraction: float = 0.01  # components up to this fraction of the image are text/markers
    band_fraction: float = 0.4  # a row/column is scan if its non-dark fraction >= this x the best one's
    max_gap: int = 16  # merge runs separated by at most this many rows/columns (seam between panes)
    min_area_fraction: float = 0.25  # smaller detected boxes are treated as failures -> full image

    def __post_init__(self) -> None:
        checks = {
            "dark": 0.0 <= self.dark < 1.0,
            "smooth": self.smooth >= 1,
            "min_component_fraction": 0.0 <= self.min_component_fraction < 1.0,
            "band_fraction": 0.0 < self.band_fraction <= 1.0,
            "max_gap": self.max_gap >= 0,
            "min_area_fraction": 0.0 <= self.min_area_fraction <= 1.0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"CropParams.{key}={getattr(self, key)!r} is out of range")


def scan_area_box(image: np.ndarray, params: CropParams | None = None) -> Box:
    """Detect the ultrasound scan area of a grey image (H, W) in [0, 1]; see the module docstring.

    Returns ``(top, bottom, left, right)`` (half-open); the full image ``(0, H, 0, W)`` when detection fails.
    """
    params = params or CropParams()
    if image.ndim != 2:
        raise ValueError(f"scan_area_box expects a 2D grey image, got shape {image.shape}")
    height, width = image.shape
    full: Box = (0, height, 0, width)
    if height == 0 or width == 0:
        return full
    grey = np.asarray(image, dtype=np.float32)
    smoothed = ndi.uniform_filter(grey, size=params.smooth, mode="reflect")
    non_dark = smoothed > params.dark
    max_small = int(params.min_component_fraction * height * width)
    if max_small > 0:
        non_dark = morphology.remove_small_objects(non_dark, max_size=max_small, connectivity=2)

    cols = _longest_band(non_dark.mean(axis=0), params.band_fraction, params.max_gap)
    if cols is None:
        return full
    left, right = cols
    rows = _longest_band(non_dark[:, left:right].mean(axis=1), params.band_fraction, params.max_gap)
    if rows is None:
        return full
    top, bottom = rows
    if (bottom - top) * (right - left) < params.min_area_fraction * height * width:
        return full
    return (top, bottom, left, right)


def _longest_band(profile: np.ndarray, band_fraction: float, max_gap: int) -> tuple[int, int] | None:
    """Longest run of ``profile >= band_fraction * max(profile)``, bridging gaps of <= max_gap; half-open."""
    peak = float(profile.max()) if profile.size else 0.0
    if peak <= 0.0:
        return None
    on = np.flatnonzero(profile >= band_fraction * peak)
    # Split the "on" indices wherever the hole between consecutive ones is wider than max_gap.
    breaks = np.flatnonzero(np.diff(on) > max_gap + 1)
    starts = np.concatenate(([on[0]], on[breaks + 1]))
    ends = np.concatenate((on[breaks], [on[-1]])) + 1
    best = int(np.argmax(ends - starts))  # argmax takes the first of equal runs: deterministic
    return int(starts[best]), int(ends[best])


def union_with_mask(box: Box, mask: np.ndarray | None) -> Box:
    """Grow ``box`` to contain every True pixel of ``mask`` (unchanged when the mask is None or empty)."""
    if mask is None or not mask.any():
        return box
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = box
    return (
        min(top, int(rows[0])),
        max(bottom, int(rows[-1]) + 1),
        min(left, int(cols[0])),
        max(right, int(cols[-1]) + 1),
    )


def pixels_outside(mask: np.ndarray | None, box: Box) -> int:
    """Number of True mask pixels that ``image[top:bottom, left:right]`` would cut away."""
    if mask is None:
        return 0
    top, bottom, left, right = box
    return int(mask.sum()) - int(mask[top:bottom, left:right].sum())


def crop_with_mask(
    image: np.ndarray, mask: np.ndarray | None, params: CropParams | None = None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, object]]:
    """Crop image and mask to the scan area grown to contain the mask.

    Returns ``(image, mask, info)`` where info holds ``crop_box`` (the box applied, original coordinates),
    ``scan_box`` (the detected scan area before the union), ``mask_pixels_outside_scan_area`` (annotation
    drawn outside the detected scan, kept thanks to the union) and ``mask_pixels_cropped`` (mask pixels
    lost by the crop; 0 by construction, reported so that a change in the rule cannot lose them silently).
    """
    scan_box = scan_area_box(image, params)
    box = union_with_mask(scan_box, mask)
    top, bottom, left, right = box
    info: dict[str, object] = {
        "crop_box": box,
        "scan_box": scan_box,
        "mask_pixels_outside_scan_area": pixels_outside(mask, scan_box),
        "mask_pixels_cropped": pixels_outside(mask, box),
    }
    cropped_mask = None if mask is None else np.ascontiguousarray(mask[top:bottom, left:right])
    return np.ascontiguousarray(image[top:bottom, left:right]), cropped_mask, info
