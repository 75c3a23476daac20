"""What counts as a usable nodule annotation: a minimum mask size, and polygons checked before rasterising.

Why: a mask of 1-3 pixels is never a nodule (a stray click, a polygon clipped to an image corner, collinear
points rasterised to a line), yet it decodes fine and yields a constant radiomics row (entropy 0, GLCM
homogeneity 1, taller-than-wide 1) that would feed training silently. Every source applies
:func:`mask_problem` when it decodes a mask (``Source.__getitem__``): a mask below the minimum is dropped
(the image is kept without a mask, still usable for classification) and recorded in ``source.skips`` with
the reason, so ``rlar data summary`` counts it. Polygon sources (DDTI) call :func:`polygon_problem` per
region before rasterising it.

The defaults are deliberately small (real nodules span tens of pixels at any ultrasound resolution) and are
the same numbers the radiomics extraction uses by default (``RadiomicsParams.min_nodule_pixels`` /
``min_nodule_extent``), which can be raised there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Fewest foreground pixels a mask may have (a 4x4 square).
MIN_MASK_PIXELS: int = 16
#: Fewest rows and columns the mask's bounding box must span (a line or a 2-pixel sliver is not a nodule).
MIN_MASK_EXTENT: int = 3
#: Smallest polygon area in square pixels (shoelace formula); collinear points give 0.
MIN_POLYGON_AREA: float = 1.0

TOO_SMALL = "mask too small"  # the prefix every size-related reason starts with, so summaries can count them


def mask_problem(
    mask: np.ndarray, min_pixels: int = MIN_MASK_PIXELS, min_extent: int = MIN_MASK_EXTENT
) -> str | None:
    """Why ``mask`` (bool, H x W) is not a usable nodule annotation, or None when it is.

    The reason starts with :data:`TOO_SMALL` and names the rule, not the item's numbers, so that summaries
    counting skips by reason group every too-small mask together; callers append what they do about it.
    An empty mask is not a problem here (it means "no nodule drawn" and sources treat it as no mask).
    """
    pixels = int(np.count_nonzero(mask))
    if pixels == 0:
        return None
    if pixels < min_pixels:
        return f"{TOO_SMALL}: fewer than {min_pixels} pixels"
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    if min(height, width) < min_extent:
        return f"{TOO_SMALL}: under {min_extent} pixels tall or wide"
    return None


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """Absolute shoelace area of a closed polygon given as (x, y) points."""
    xy = np.asarray(points, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_problem(
    points: Sequence[tuple[float, float]], width: int, height: int, min_area: float = MIN_POLYGON_AREA
) -> str | None:
    """Why a polygon of (x, y) pixel points cannot be rasterised into a nodule of a ``width`` x ``height`` image.

    Checked: at least 3 points, finite coordinates, no point more than one image size beyond the border (a
    corrupt coordinate such as 1e308 would otherwise be clipped to the border and draw a wedge across half the
    image), not wholly outside the image (clipping such a polygon would leave a border line or a corner pixel),
    and an area (after clipping to the image) of at least ``min_area`` square pixels. The area is the shoelace
    area, or for a self-intersecting outline (a bow-tie, whose lobes cancel in the shoelace sum) the pixels the
    rasteriser fills; only points on one line enclose nothing ("collinear").
    """
    if len(points) < 3:
        return f"{len(points)} point(s), a polygon needs 3"
    xy = np.asarray(points, dtype=np.float64)
    if not np.isfinite(xy).all():
        return "a coordinate is not finite"
    x, y = xy[:, 0], xy[:, 1]
    far = (x < -width) | (x > 2 * width - 1) | (y < -height) | (y > 2 * height - 1)
    if far.any():
        k = int(np.flatnonzero(far)[0])
        return (f"point {k + 1} ({x[k]:g}, {y[k]:g}) lies more than one image size outside the {width}x{height} "
                "image (a corrupt coordinate; clipped, it would draw a wedge across the image)")
    if x.max() < 0 or y.max() < 0 or x.min() > width - 1 or y.min() > height - 1:
        return (
            f"wholly outside the {width}x{height} image (x {x.min():g}..{x.max():g}, y {y.min():g}..{y.max():g})"
        )
    clipped = np.stack([np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)], axis=1)
    area = polygon_area([(float(a), float(b)) for a, b in clipped])
    if area >= min_area:
        return None
    if _collinear(xy):
        why = "its points are collinear"
    elif _collinear(clipped):
        why = "it lies on the image border"
    else:
        filled = _filled_pixels(clipped, (height, width))
        if filled >= min_area:
            return None  # self-intersecting (a bow-tie): its lobes cancel in the shoelace sum, not on the image
        why = "a self-intersecting outline whose parts cancel" if polygon_area(points) < min_area else \
            "it lies on the image border"
        area = float(filled)
    return f"encloses {area:.2g} square pixels inside the image ({why}); minimum {min_area:g}"


def _collinear(xy: np.ndarray) -> bool:
    """Whether all points lie on one line (rank < 2 of the centred coordinates, to rounding)."""
    centred = np.asarray(xy, dtype=np.float64) - np.mean(xy, axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return bool(singular.size < 2 or singular[1] <= 1e-9 * max(float(singular[0]), 1.0))


def _filled_pixels(xy: np.ndarray, shape: tuple[int, int]) -> int:
    """Pixels the rasteriser the sources use (:func:`skimage.draw.polygon`, even-odd) fills for ``xy``."""
    from skimage.draw import polygon as fill_polygon

    rows, _ = fill_polygon(xy[:, 1], xy[:, 0], shape=shape)
    return int(rows.size)
