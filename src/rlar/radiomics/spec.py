"""The catalogue of the 13 TI-RADS-aligned radiomics features: names, ACR criterion, family, definition.

This module only *describes* the features (no pixels): the extraction is in :mod:`rlar.radiomics.features`.
The order of :data:`FEATURE_NAMES` is the order of the 13 ``h_tirads`` dimensions of the model, so it must never
be changed without bumping :data:`FEATURES_VERSION` (which also invalidates cached targets).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlar.data.record import DESCRIPTORS

# Bump whenever a definition, the order, or a degenerate-case convention changes: cached targets carry it.
FEATURES_VERSION: str = "2"  # 2: margin_sharpness = edge across the outline vs the ring's texture

FAMILIES: tuple[str, ...] = ("shape_margin", "intensity_texture")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its ACR TI-RADS criterion (a key of ``DESCRIPTOR_VALUES``), family and checkable definition."""

    name: str
    criterion: str
    family: str
    definition: str
    pyradiomics_equivalent: str | None = None  # "<featureClass>:<FeatureName>" when the definition is identical


# Notation: M = nodule mask, R = ring = dilate(M, disk(ring_width)) \ M (clipped to the image), I = grey image in
# [0, 1], I_s = Gaussian-smoothed I (sigma = smoothing_sigma), Q = I discretised in M (bin_width or bin_count, as
# pyradiomics), C = marching-squares contour of M at level 0.5 (pyradiomics' 2D mesh).
FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "cystic_fraction",
        "composition",
        "intensity_texture",
        "|{p in M : I_s(p) < cystic_ratio * median_R(I)}| / |M|  (anechoic, fluid-filled part of the nodule)",
    ),
    FeatureSpec(
        "intensity_entropy",
        "composition",
        "intensity_texture",
        "-sum_i p_i log2(p_i + eps), p = histogram of Q over M, eps = 2.2e-16  (mixed cystic/solid heterogeneity)",
        "firstorder:Entropy",
    ),
    FeatureSpec(
        "glcm_contrast",
        "composition",
        "intensity_texture",
        "mean over GLCM offsets of sum_ij (i-j)^2 P(i,j); P symmetric, normalised, pairs with both pixels in M "
        "(spongiform/microcystic echotexture)",
        "glcm:Contrast",
    ),
    FeatureSpec(
        "glcm_homogeneity",
        "composition",
        "intensity_texture",
        "mean over GLCM offsets of sum_ij P(i,j) / (1 + (i-j)^2)  (inverse difference moment; uniform solid "
        "texture -> 1)",
        "glcm:Idm",
    ),
    FeatureSpec(
        "echo_ratio",
        "echogenicity",
        "intensity_texture",
        "mean_M(I) / max(mean_R(I), 1/255)  (<1 hypoechoic, ~1 isoechoic, >1 hyperechoic vs parenchyma)",
    ),
    FeatureSpec(
        "echo_contrast",
        "echogenicity",
        "intensity_texture",
        "(median_M(I) - median_R(I)) / max(std_R(I), 1/255)  (robust contrast in units of parenchyma speckle)",
    ),
    FeatureSpec(
        "taller_than_wide",
        "shape",
        "shape_margin",
        "AP extent / transverse extent = (rows spanned by M) / (columns spanned by M), axis-aligned: the image "
        "rows are the beam (anteroposterior) direction of a transverse scan; in millimetres (rows x row spacing "
        "over columns x column spacing) when the image declares its pixel spacing",
    ),
    FeatureSpec(
        "elongation",
        "shape",
        "shape_margin",
        "sqrt(lambda_minor / lambda_major) of the covariance of M's pixel coordinates (1 round, -> 0 line-like); "
        "1 for a single pixel",
        "shape2D:Elongation",
    ),
    FeatureSpec(
        "circularity",
        "shape",
        "shape_margin",
        "2 sqrt(pi A) / P, A and P the area and perimeter of contour C (1 for a disk)",
        "shape2D:Sphericity",
    ),
    FeatureSpec(
        "solidity",
        "margin",
        "shape_margin",
        "|M| / |convex hull of M| in pixels (lobulated/irregular margins -> lower)",
    ),
    FeatureSpec(
        "margin_sharpness",
        "margin",
        "shape_margin",
        "e_b / (e_b + g_R), e = |Sobel(I_s) . n| the gradient across the outline (n = gradient of M blurred by "
        "sigma 2 px), e_b = mean e on the band dilate(M,1) \\ erode(M,1), g_R = mean |Sobel(I_s)| on the ring R; "
        "0.5 when both are 0 (edge no stronger than the parenchyma's texture -> 0, well-defined -> 1)",
    ),
    FeatureSpec(
        "margin_irregularity",
        "margin",
        "shape_margin",
        "P(C_s) / P(convex hull of C_s) - 1, C_s = iso-0.5 outline of M blurred by a Gaussian of sigma 1.5 px "
        "(removes the pixel staircase)  (0 for convex outlines, grows with lobulation and spiculation)",
    ),
    FeatureSpec(
        "bright_focus_fraction",
        "echogenic_foci",
        "intensity_texture",
        "|{p in M : I(p) > percentile_R(I, bright_percentile)}| / |M|  (calcifications brighter than almost "
        "all parenchyma)",
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_FAMILIES: dict[str, tuple[str, ...]] = {
    family: tuple(f.name for f in FEATURES if f.family == family) for family in FAMILIES
}
FEATURES_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}

assert len(FEATURE_NAMES) == 13 and len(set(FEATURE_NAMES)) == 13
assert all(f.criterion in DESCRIPTORS and f.family in FAMILIES for f in FEATURES)


def feature_subset(exclude: str | None = None) -> tuple[str, ...]:
    """Feature names left after leaving out ``exclude``, in canonical order.

    ``exclude`` may be one feature name (leave-one-feature-out), a family name (``"shape_margin"`` /
    ``"intensity_texture"``: leave-one-family-out) or an ACR criterion (``"margin"``, ...). None keeps all 13.
    """
    if exclude is None:
        return FEATURE_NAMES
    if exclude in FEATURES_BY_NAME:
        dropped = {exclude}
    elif exclude in FEATURE_FAMILIES:
        dropped = set(FEATURE_FAMILIES[exclude])
    elif exclude in DESCRIPTORS:
        dropped = {f.name for f in FEATURES if f.criterion == exclude}
    else:
        raise KeyError(
            f"cannot exclude '{exclude}': not a feature ({', '.join(FEATURE_NAMES)}), family "
            f"({', '.join(FAMILIES)}) or criterion ({', '.join(DESCRIPTORS)})"
        )
    return tuple(n for n in FEATURE_NAMES if n not in dropped)


def feature_indices(names: tuple[str, ...] | list[str]) -> list[int]:
    """Positions of ``names`` in the 13-dim target (to slice ``h_tirads`` or a target frame)."""
    unknown = [n for n in names if n not in FEATURES_BY_NAME]
    if unknown:
        raise KeyError(f"unknown feature name(s) {unknown}; known: {', '.join(FEATURE_NAMES)}")
    return [FEATURE_NAMES.index(n) for n in names]


def feature_mask(exclude: str | None = None) -> list[bool]:
    """13 booleans, False for the features left out by ``feature_subset(exclude)`` (a loss/target mask)."""
    kept = set(feature_subset(exclude))
    return [n in kept for n in FEATURE_NAMES]
