"""Extraction of the 13 TI-RADS-aligned radiomics features from one image and its nodule mask.

The definitions are in :mod:`rlar.radiomics.spec` (and docs/radiomics.md); this module computes them with
scikit-image / SciPy primitives. Features with a pyradiomics twin (entropy, GLCM contrast / Idm, elongation,
sphericity) reproduce pyradiomics' discretisation and 2D mesh so that the two agree to numerical precision
(tests/radiomics/test_pyradiomics_agreement.py).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from skimage import filters, measure, morphology
from skimage.feature import graycomatrix, graycoprops

from rlar.data.sources.masks import mask_problem
from rlar.errors import DataError
from rlar.prediction import clean_mask
from rlar.radiomics.params import RadiomicsParams
from rlar.radiomics.spec import FEATURE_NAMES

# Floor for denominators on the grey scale: one 8-bit grey level. Below it a mean/std is indistinguishable from 0
# on the displays the data came from, and the floor keeps ratios finite for a black parenchyma ring.
GREY_FLOOR: float = 1.0 / 255.0
# Blur (pixels) of the mask outline used for margin_irregularity; removes the pixel staircase (a digital disk of
# radius 40 scores 1e-4 instead of 5e-2) while keeping lobulations a few pixels wide.
CONTOUR_SIGMA: float = 1.5
# Blur (pixels) of the mask whose gradient gives the outline's normal direction for margin_sharpness: smooth enough
# that the pixel staircase does not tilt the normal, small enough to follow lobulations.
NORMAL_SIGMA: float = 2.0


def extract_features(
    image: np.ndarray,
    mask: np.ndarray,
    params: RadiomicsParams | None = None,
    *,
    item: str = "image",
    spacing_mm: tuple[float, float] | None = None,
) -> np.ndarray:
    """Compute the 13 features (order :data:`FEATURE_NAMES`) of one nodule.

    Args:
        image: grey image, float (H, W) with values in [0, 1].
        mask: nodule mask, bool (H, W) (0/1 integers are accepted).
        params: extraction settings; defaults to ``RadiomicsParams()``.
        item: name used in error messages (e.g. the image id).
        spacing_mm: (row, column) pixel spacing in mm when the image declares it. Used by ``taller_than_wide``
            (height over width in millimetres: with unequal spacing the pixel ratio is off by their ratio); the
            other shape features assume square pixels (see docs/radiomics.md).

    Returns:
        float64 array of shape (13,), always finite.

    Raises:
        DataError: image/mask of wrong shape or type, non-finite or out-of-range grey values, an empty mask, a
            nodule below ``params.min_nodule_pixels`` / ``min_nodule_extent`` (its features would be a constant,
            meaningless row), or a mask covering the whole image (no parenchyma to compare the nodule with).
    """
    params = params or RadiomicsParams()
    image, full_mask = _validate(image, mask, item)
    nodule = select_component(full_mask, params.component)
    problem = mask_problem(nodule, params.min_nodule_pixels, params.min_nodule_extent)
    if problem is not None:
        raise DataError(item, f"{problem}; no radiomics target")
    row_mm, col_mm = _checked_spacing(spacing_mm, item)

    # Work on a crop around the nodule: every feature only looks at the nodule, its ring, and the few pixels the
    # Gaussian (radius round(4 sigma)) and Sobel (1) filters need, so the crop gives the same values as the full
    # image at a fraction of the cost.
    margin = params.ring_width + int(4.0 * params.smoothing_sigma + 0.5) + 3
    rows, cols = np.nonzero(nodule)
    window = (
        slice(max(rows.min() - margin, 0), min(rows.max() + margin + 1, image.shape[0])),
        slice(max(cols.min() - margin, 0), min(cols.max() + margin + 1, image.shape[1])),
    )
    img = image[window].astype(np.float64)
    nod = nodule[window]
    other = full_mask[window]

    # Perinodular parenchyma: Euclidean ring of ring_width pixels (same set as dilation by disk(ring_width)),
    # excluding every annotated pixel (also other components), clipped to the image by construction.
    ring = morphology.isotropic_dilation(nod, params.ring_width) & ~other
    if not ring.any():
        raise DataError(
            item, "mask leaves no parenchyma around the nodule (ring is empty): cannot measure echogenicity"
        )

    smoothed = (
        filters.gaussian(img, sigma=params.smoothing_sigma, mode="nearest", preserve_range=True)
        if params.smoothing_sigma > 0
        else img
    )
    nod_values = img[nod]
    ring_values = img[ring]

    values = {
        **_composition(img, nod, smoothed, ring_values, params),
        **_echogenicity(nod_values, ring_values),
        **_shape_margin(nod, smoothed, ring, row_mm / col_mm),
        "bright_focus_fraction": float(np.mean(nod_values > np.percentile(ring_values, params.bright_percentile))),
    }
    out = np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)
    if not np.all(np.isfinite(out)):  # pragma: no cover - every degenerate case has a defined value
        bad = [n for n, v in zip(FEATURE_NAMES, out, strict=True) if not np.isfinite(v)]
        raise DataError(item, f"non-finite radiomics feature(s) {bad}")
    return out


def discretise(values: np.ndarray, params: RadiomicsParams) -> np.ndarray:
    """Grey-level bins 1..N of the nodule's grey values, exactly as pyradiomics ``binImage`` computes them.

    Fixed bin width: edges every ``bin_width`` from the multiple of ``bin_width`` at or below the minimum, so
    bins are equally spaced from 0 and comparable across images. Fixed bin count: ``bin_count`` equal bins over
    the nodule's own [min, max].
    """
    values = np.asarray(values, dtype=np.float64)
    if params.bin_count is not None:
        edges = np.histogram(values, params.bin_count)[1]
        edges[-1] += 1  # the maximum falls in the top bin under np.digitize (pyradiomics does the same)
    else:
        width = float(params.bin_width)  # type: ignore[arg-type]  # validated: exactly one binning is set
        low = values.min() - (values.min() % width)
        edges = np.arange(low, values.max() + 2 * width, width)
        if len(edges) == 1:  # flat region whose value is a multiple of the width: one bin
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    bins: np.ndarray = np.digitize(values, edges)
    return bins


def glcm_offsets(distances: tuple[int, ...]) -> list[tuple[int, int]]:
    """Pixel offsets (d_row, d_col) used for the GLCM: pyradiomics' 2D angle set.

    For each Chebyshev distance d, every offset on the square ring max(|dr|, |dc|) = d, one of each +/- pair
    (the GLCM is symmetric, so the opposite offset adds nothing). d = 1 gives the usual 0/45/90/135 degrees.
    """
    offsets: list[tuple[int, int]] = []
    for d in distances:
        for dr in range(0, d + 1):
            for dc in range(-d, d + 1):
                if max(abs(dr), abs(dc)) != d or (dr == 0 and dc < 0):
                    continue
                offsets.append((dr, dc))
    return offsets


def _validate(image: np.ndarray, mask: np.ndarray, item: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 2:
        raise DataError(item, f"image must be 2D (H, W), got shape {image.shape}")
    if mask.shape != image.shape:
        raise DataError(item, f"mask shape {mask.shape} differs from image shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise DataError(item, f"image must be float in [0, 1], got dtype {image.dtype}")
    if not np.all(np.isfinite(image)):
        raise DataError(item, "image contains NaN or infinite values")
    if image.min() < 0.0 or image.max() > 1.0:
        raise DataError(item, f"image values must lie in [0, 1], got [{image.min():.4g}, {image.max():.4g}]")
    if mask.dtype != bool:
        if not (np.issubdtype(mask.dtype, np.integer) and np.isin(mask, (0, 1)).all()):
            raise DataError(item, f"mask must be bool (or 0/1 integers), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    if not mask.any():
        raise DataError(item, "mask is empty: no nodule pixel to measure")
    if mask.all():
        raise DataError(item, "mask covers the whole image: no parenchyma to compare the nodule with")
    return image, mask


def select_component(mask: np.ndarray, component: str) -> np.ndarray:
    """The part of ``mask`` the features describe: all of it, or its largest 8-connected region."""
    if component == "all":
        return mask
    return clean_mask(mask, "largest")  # the prediction's own rule: 8-connected, ties to the first in raster order


def _composition(
    img: np.ndarray, nod: np.ndarray, smoothed: np.ndarray, ring_values: np.ndarray, params: RadiomicsParams
) -> dict[str, float]:
    cystic = float(np.mean(smoothed[nod] < params.cystic_ratio * np.median(ring_values)))

    levels = discretise(img[nod], params)
    # Shannon entropy (base 2) of the bin histogram; pyradiomics adds eps=2.2e-16 inside the log, a difference
    # below 1e-12 relative.
    entropy = float(measure.shannon_entropy(levels, base=2))

    # GLCM restricted to the nodule: bins 1..N inside, 0 outside, then drop row/column 0 so that only pairs with
    # both pixels in the nodule count (pyradiomics' masked GLCM).
    n_levels = int(levels.max())
    quantised = np.zeros(img.shape, dtype=np.uint16)
    quantised[nod] = levels
    matrices = []
    for dr, dc in glcm_offsets(params.glcm_distances):
        # skimage steps round(sin(a) d) rows and round(cos(a) d) columns: this (d, a) hits (dr, dc) exactly.
        glcm = graycomatrix(
            quantised, [math.hypot(dr, dc)], [math.atan2(dr, dc)], levels=n_levels + 1, symmetric=True, normed=False
        )[1:, 1:]
        if glcm.sum() > 0:  # an offset with no pair inside the mask is left out of the mean (pyradiomics too)
            matrices.append(glcm)
    if matrices:
        stack = np.concatenate(matrices, axis=3).astype(np.float64)  # (N, N, 1, n_offsets); graycoprops normalises
        contrast = float(graycoprops(stack, "contrast").mean())
        homogeneity = float(graycoprops(stack, "homogeneity").mean())
    else:  # single pixel or no neighbouring pair: a constant texture
        contrast, homogeneity = 0.0, 1.0
    return {
        "cystic_fraction": cystic,
        "intensity_entropy": entropy,
        "glcm_contrast": contrast,
        "glcm_homogeneity": homogeneity,
    }


def _echogenicity(nod_values: np.ndarray, ring_values: np.ndarray) -> dict[str, float]:
    ratio = float(np.mean(nod_values) / max(float(np.mean(ring_values)), GREY_FLOOR))
    contrast = float((np.median(nod_values) - np.median(ring_values)) / max(float(np.std(ring_values)), GREY_FLOOR))
    return {"echo_ratio": ratio, "echo_contrast": contrast}


def _checked_spacing(spacing_mm: tuple[float, float] | None, item: str) -> tuple[float, float]:
    """(row, column) spacing, (1, 1) when unknown; DataError for non-positive or non-finite values."""
    if spacing_mm is None:
        return 1.0, 1.0
    row, col = (float(v) for v in spacing_mm)
    if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
        raise DataError(item, f"pixel spacing must be two positive millimetre values, got {spacing_mm}")
    return row, col


def _shape_margin(nod: np.ndarray, smoothed: np.ndarray, ring: np.ndarray, aspect: float = 1.0) -> dict[str, float]:
    """Shape and margin features; ``aspect`` = row spacing / column spacing (1 for square or unknown pixels)."""
    props = measure.regionprops(nod.astype(np.uint8))[0]
    min_row, min_col, max_row, max_col = props.bbox
    # Height over width of the bounding box in physical units: rows x row spacing over columns x column spacing.
    taller_than_wide = (max_row - min_row) * aspect / (max_col - min_col)

    # inertia_tensor_eigvals are the eigenvalues of the pixel-coordinate covariance (descending): pyradiomics'
    # Elongation is sqrt(minor / major). A single pixel has no direction: 1 (round) rather than 0/0.
    major, minor = props.inertia_tensor_eigvals
    elongation = math.sqrt(max(minor, 0.0) / major) if major > 0 else 1.0

    perimeter, area, _ = _contour(nod.astype(np.float64))
    circularity = 2.0 * math.sqrt(math.pi * area) / perimeter

    # Irregularity is measured on the outline of the mask blurred by CONTOUR_SIGMA: the raw pixel outline is a
    # staircase whose length exceeds its convex hull's by ~5% even for a perfect digital disk, which would drown
    # real lobulation. Structures thinner than the blur have no smoothed outline: fall back to the raw one.
    pad = int(4.0 * CONTOUR_SIGMA + 0.5) + 1  # keeps the blurred outline closed inside the array
    blurred = filters.gaussian(np.pad(nod.astype(np.float64), pad), sigma=CONTOUR_SIGMA)
    smooth_perimeter, _, points = _contour(blurred, pad=False)
    if len(points) < 3:
        smooth_perimeter, _, points = _contour(nod.astype(np.float64))
    try:
        hull_perimeter = ConvexHull(points).area  # in 2D, ConvexHull.area is the hull's perimeter
        irregularity = max(smooth_perimeter / hull_perimeter - 1.0, 0.0)
    except QhullError:  # pragma: no cover - marching-squares outlines of a non-empty mask are never flat
        irregularity = 0.0

    sharpness = margin_sharpness(nod, smoothed, ring)

    return {
        "taller_than_wide": float(taller_than_wide),
        "elongation": float(elongation),
        "circularity": float(circularity),
        "solidity": float(props.solidity),
        "margin_sharpness": float(sharpness),
        "margin_irregularity": float(irregularity),
    }


def margin_sharpness(nod: np.ndarray, smoothed: np.ndarray, ring: np.ndarray) -> float:
    """How clearly the outline stands out as an edge against the parenchyma's own texture (features v2).

    ``e_b / (e_b + g_R)``: ``e_b`` is the mean, over the band ``dilate(M, 1) \\ erode(M, 1)`` across the outline, of
    the grey-level gradient's component along the outline's normal, ``|grad(I_s) . n|`` with ``n`` the gradient of
    ``M`` blurred by :data:`NORMAL_SIGMA`; ``g_R`` is the mean gradient magnitude ``|grad(I_s)|`` on the ring ``R``
    (the speckle texture of the parenchyma). Gradients are Sobel's. A well-defined margin is an edge across the
    outline stronger than the parenchyma's texture (-> 1); an ill-defined one is not (-> 0). 0.5 when both are 0.
    """
    grad_rows, grad_cols = filters.sobel_h(smoothed), filters.sobel_v(smoothed)
    soft = filters.gaussian(nod.astype(np.float64), sigma=NORMAL_SIGMA)
    normal_rows, normal_cols = filters.sobel_h(soft), filters.sobel_v(soft)
    norm = np.hypot(normal_rows, normal_cols)
    band = morphology.dilation(nod, morphology.disk(1)) & ~morphology.erosion(nod, morphology.disk(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        across = np.abs(grad_rows * normal_rows + grad_cols * normal_cols) / norm
    across = np.where(norm > 0, across, 0.0)  # no outline direction (never on the band of a real mask): no edge
    e_band = float(across[band].mean())
    g_ring = float(np.hypot(grad_rows, grad_cols)[ring].mean())
    return e_band / (e_band + g_ring) if e_band + g_ring > 0 else 0.5


def _contour(field: np.ndarray, pad: bool = True) -> tuple[float, float, np.ndarray]:
    """Perimeter, enclosed area and vertices of the iso-0.5 outline of ``field`` (a 0/1 mask or a blurred one).

    For a mask this is pyradiomics' 2D marching-squares mesh: vertices halfway between inside and outside pixels,
    diagonal neighbours treated as separate (``fully_connected="low"``: the choice that reproduces pyradiomics'
    area and perimeter on masks with diagonal contacts and holes). ``pad`` adds a zero border so every outline is
    closed. The area is the signed shoelace sum over all outlines, so holes are subtracted.
    """
    padded = np.pad(field, 1) if pad else field
    contours = measure.find_contours(padded, 0.5, fully_connected="low")
    if not contours:
        return 0.0, 0.0, np.empty((0, 2))
    perimeter = 0.0
    signed_area = 0.0
    for c in contours:
        perimeter += float(np.sum(np.hypot(*np.diff(c, axis=0).T)))
        r, col = c[:, 0], c[:, 1]
        signed_area += 0.5 * float(np.dot(r[:-1], col[1:]) - np.dot(r[1:], col[:-1]))
    return perimeter, abs(signed_area), np.concatenate(contours, axis=0)
