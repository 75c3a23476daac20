"""Behaviour of extract_features: errors, degenerate cases, and values a reader can check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rlar.errors import DataError
from rlar.radiomics import FEATURE_NAMES, RadiomicsParams, extract_features
from rlar.radiomics.features import glcm_offsets
from tests.radiomics.conftest import EllipseFactory, SceneFactory


def named(values: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, values.tolist(), strict=True))


def test_output_shape_dtype_and_finite(scene: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = scene
    out = extract_features(image, mask)
    assert out.shape == (13,) and out.dtype == np.float64 and np.all(np.isfinite(out))


@pytest.mark.parametrize(
    ("image", "mask", "reason"),
    [
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), bool), "mask is empty"),
        (np.zeros((8, 8), np.float32), np.ones((8, 8), bool), "whole image"),
        (np.zeros((8, 8), np.float32), np.ones((8, 9), bool), "differs from image shape"),
        (np.zeros((8, 8, 3), np.float32), np.ones((8, 8, 3), bool), "must be 2D"),
        (np.full((8, 8), 2.0, np.float32), np.eye(8, dtype=bool), r"\[0, 1\]"),
        (np.full((8, 8), np.nan, np.float32), np.eye(8, dtype=bool), "NaN"),
        (np.zeros((8, 8), np.uint8), np.eye(8, dtype=bool), "float"),
        (np.zeros((8, 8), np.float32), np.eye(8, dtype=np.uint8) * 255, "bool"),
    ],
)
def test_invalid_inputs_raise_data_error_naming_item(image: np.ndarray, mask: np.ndarray, reason: str) -> None:
    with pytest.raises(DataError, match=reason) as info:
        extract_features(image, mask, item="case_7")
    assert info.value.item == "case_7"


def test_integer_01_mask_is_accepted(scene: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = scene
    np.testing.assert_array_equal(extract_features(image, mask.astype(np.uint8)), extract_features(image, mask))


@pytest.mark.parametrize(
    "mask_pixels",
    [
        [(5, 5)],  # single pixel: no GLCM pair, no covariance
        [(5, c) for c in range(2, 9)],  # one-pixel-thick line: no interior
        [(0, 0), (0, 1), (1, 0), (1, 1)],  # in the image corner: ring clipped by the border
    ],
)
def test_degenerate_masks_give_defined_finite_values(mask_pixels: list[tuple[int, int]]) -> None:
    # Refused by default (next test); with the size minimum lowered to 1 the maths still stays finite.
    image = np.full((12, 12), 0.5, np.float32)  # flat image: zero gradients, zero std everywhere
    mask = np.zeros((12, 12), bool)
    for r, c in mask_pixels:
        mask[r, c] = True
    anything = RadiomicsParams(min_nodule_pixels=1, min_nodule_extent=1)
    values = named(extract_features(image, mask, anything))
    assert all(np.isfinite(v) for v in values.values())
    assert values["margin_sharpness"] == 0.5  # no gradient anywhere: no edge, no parenchyma texture
    assert values["echo_ratio"] == pytest.approx(1.0) and values["echo_contrast"] == 0.0
    if len(mask_pixels) == 1:
        assert values["glcm_contrast"] == 0.0 and values["glcm_homogeneity"] == 1.0
        assert values["elongation"] == 1.0 and values["intensity_entropy"] == 0.0


@pytest.mark.parametrize(
    ("mask_pixels", "reason"),
    [
        ([(5, 5)], "fewer than 16 pixels"),  # a stray click
        ([(0, 0), (0, 1), (1, 0)], "fewer than 16 pixels"),  # a polygon clipped to the image corner, rasterised
        ([(5, c) for c in range(0, 12)] + [(6, c) for c in range(0, 12)], "under 3 pixels"),  # collinear polygon
    ],
)
def test_tiny_nodule_is_refused_by_default_with_reason(mask_pixels: list[tuple[int, int]], reason: str) -> None:
    image = np.random.default_rng(0).random((12, 12)).astype(np.float32)
    mask = np.zeros((12, 12), bool)
    for r, c in mask_pixels:
        mask[r, c] = True
    with pytest.raises(DataError, match=reason) as info:
        extract_features(image, mask, item="tiny")
    assert info.value.item == "tiny" and "mask too small" in info.value.reason


def test_taller_than_wide_uses_pixel_spacing() -> None:
    # 20 rows x 20 columns in pixels; rows 0.2 mm apart and columns 0.1 mm: 4 mm tall, 2 mm wide -> ratio 2.
    image = np.random.default_rng(1).random((60, 60)).astype(np.float32)
    mask = np.zeros((60, 60), bool)
    mask[20:40, 20:40] = True
    square = named(extract_features(image, mask))
    physical = named(extract_features(image, mask, spacing_mm=(0.2, 0.1)))
    assert square["taller_than_wide"] == pytest.approx(1.0)
    assert physical["taller_than_wide"] == pytest.approx(2.0)
    with pytest.raises(DataError, match="spacing"):
        extract_features(image, mask, spacing_mm=(0.0, 0.1))


def test_black_ring_uses_grey_floor_not_infinity() -> None:
    image = np.zeros((20, 20), np.float32)
    mask = np.zeros((20, 20), bool)
    mask[8:12, 8:12] = True
    image[mask] = 0.4
    values = named(extract_features(image, mask))
    assert values["echo_ratio"] == pytest.approx(0.4 * 255)
    assert values["echo_contrast"] == pytest.approx(0.4 * 255)


def test_echogenicity_is_relative_to_the_ring() -> None:
    image = np.full((40, 40), 0.5, np.float32)
    mask = np.zeros((40, 40), bool)
    mask[15:25, 12:28] = True
    image[mask] = 0.2
    image[:, :3] = 1.0  # bright strip outside the ring (ring width 5): must not influence echogenicity
    values = named(extract_features(image, mask, RadiomicsParams(ring_width=5)))
    assert values["echo_ratio"] == pytest.approx(0.2 / 0.5)
    # ring std is 0 -> floored at 1/255
    assert values["echo_contrast"] == pytest.approx((0.2 - 0.5) * 255)
    # with a ring wide enough to reach the strip, the ring mean rises and the ratio falls
    wide = named(extract_features(image, mask, RadiomicsParams(ring_width=12)))
    assert wide["echo_ratio"] < values["echo_ratio"]


def test_hypo_vs_hyperechoic_scenes(make_scene: SceneFactory) -> None:
    hypo = named(extract_features(*make_scene(1, nodule_level=0.25, background_level=0.55)))
    hyper = named(extract_features(*make_scene(1, nodule_level=0.75, background_level=0.55)))
    assert hypo["echo_ratio"] < 0.6 < 1.3 < hyper["echo_ratio"]
    assert hypo["echo_contrast"] < -2 and hyper["echo_contrast"] > 2


def test_taller_than_wide_uses_image_rows_over_columns(make_ellipse: EllipseFactory) -> None:
    image = np.full((60, 60), 0.5, np.float32)
    rect = np.zeros((60, 60), bool)
    rect[10:40, 20:35] = True  # 30 rows (AP) x 15 columns (transverse)
    values = named(extract_features(image, rect))
    assert values["taller_than_wide"] == pytest.approx(30 / 15)
    assert values["solidity"] == pytest.approx(1.0)
    # transposing the mask (wider than tall) inverts the ratio; elongation is orientation-free and unchanged
    values_t = named(extract_features(image, rect.T.copy()))
    assert values_t["taller_than_wide"] == pytest.approx(15 / 30)
    assert values_t["elongation"] == pytest.approx(values["elongation"])
    assert values["elongation"] == pytest.approx(0.5, abs=0.01)  # sqrt(var_cols / var_rows) ~ 15/30


def test_disk_is_round_and_convex(make_ellipse: EllipseFactory) -> None:
    image = np.full((70, 70), 0.5, np.float32)
    disk = make_ellipse((70, 70), (35, 35), (20, 20))
    values = named(extract_features(image, disk))
    assert values["elongation"] == pytest.approx(1.0, abs=1e-6)
    assert values["taller_than_wide"] == pytest.approx(1.0)
    assert 0.9 < values["circularity"] <= 1.0  # pixelated outline is slightly longer than a true circle
    assert values["margin_irregularity"] < 0.01
    assert values["solidity"] > 0.95  # skimage hull of pixel centres: 0.963 for this digital disk


def test_lobulated_margin_scores_lower_solidity_higher_irregularity(make_ellipse: EllipseFactory) -> None:
    image = np.full((80, 80), 0.5, np.float32)
    smooth = make_ellipse((80, 80), (40, 40), (22, 22))
    yy, xx = np.mgrid[:80, :80]
    angle = np.arctan2(yy - 40, xx - 40)
    radius = np.hypot(yy - 40, xx - 40)
    lobulated = radius <= 18 + 6 * np.cos(7 * angle)  # seven lobes
    s, lob = named(extract_features(image, smooth)), named(extract_features(image, lobulated))
    assert lob["solidity"] < s["solidity"] - 0.1
    assert lob["margin_irregularity"] > s["margin_irregularity"] + 0.05
    assert lob["circularity"] < s["circularity"]


def test_sharp_margin_beats_blurred_margin(make_ellipse: EllipseFactory) -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    mask = make_ellipse((80, 80), (40, 40), (18, 24))
    base = np.where(mask, 0.25, 0.6) + 0.02 * rng.standard_normal((80, 80))
    sharp = np.clip(base, 0, 1).astype(np.float32)
    blurred = np.clip(gaussian_filter(np.where(mask, 0.25, 0.6), 6) + 0.02 * rng.standard_normal((80, 80)), 0, 1)
    s = named(extract_features(sharp, mask))["margin_sharpness"]
    b = named(extract_features(blurred.astype(np.float32), mask))["margin_sharpness"]
    assert s > 0.8 and b < s - 0.2


def test_margin_sharpness_edge_against_parenchyma_texture(make_ellipse: EllipseFactory) -> None:
    # v2 definition: edge across the outline vs the ring's own gradient. Same step, noisier parenchyma -> the edge
    # stands out less; no step at all (isoechoic nodule in the same speckle) -> well below any stepped margin.
    rng = np.random.default_rng(5)
    mask = make_ellipse((80, 80), (40, 40), (18, 24))
    noise = rng.standard_normal((80, 80))

    def sharpness(step: float, speckle: float) -> float:
        image = np.clip(np.where(mask, 0.5 - step, 0.5) + speckle * noise, 0, 1).astype(np.float32)
        return named(extract_features(image, mask))["margin_sharpness"]

    clean, speckled, iso = sharpness(0.3, 0.01), sharpness(0.3, 0.08), sharpness(0.0, 0.08)
    # a clean step: almost all gradient is across the outline (the ring keeps the step's own 1-2 px blur tail)
    assert clean > 0.85
    assert speckled < clean - 0.05 and iso < speckled - 0.3
    assert 0.2 < iso < 0.45  # isotropic speckle only: the across-outline share of the ring's texture


def test_margin_sharpness_ignores_gradient_along_the_outline(make_ellipse: EllipseFactory) -> None:
    # Stripes that run through nodule and parenchyma alike are texture, not a margin: only their component across
    # the outline counts on the band, against their full strength in the ring (about 2/pi of it on average).
    mask = make_ellipse((80, 80), (40, 40), (20, 20))
    rows = np.mgrid[:80, :80][0]
    stripes = (0.5 + 0.2 * ((rows // 4) % 2)).astype(np.float32)  # horizontal stripes, no step at the outline
    step = np.where(mask, 0.3, 0.5).astype(np.float32)
    s_stripes = named(extract_features(stripes, mask))["margin_sharpness"]
    s_step = named(extract_features(step, mask))["margin_sharpness"]
    assert s_step > 0.85 and s_stripes < 0.5


def test_cystic_fraction_counts_anechoic_part(make_ellipse: EllipseFactory) -> None:
    rng = np.random.default_rng(4)
    mask = make_ellipse((80, 80), (40, 40), (20, 20))
    image = 0.5 + 0.03 * rng.standard_normal((80, 80))
    cyst = mask & (np.mgrid[:80, :80][1] < 40)  # left half of the nodule is fluid (black)
    image[cyst] = 0.02
    image = np.clip(image, 0, 1).astype(np.float32)
    values = named(extract_features(image, mask))
    expected = cyst.sum() / mask.sum()
    # smoothing moves the fluid/solid boundary by under a pixel: within a 1-pixel-wide column of the nodule
    assert values["cystic_fraction"] == pytest.approx(expected, abs=0.03)
    solid = named(extract_features(np.clip(0.5 + 0.03 * rng.standard_normal((80, 80)), 0, 1).astype(np.float32), mask))
    assert solid["cystic_fraction"] == 0.0
    assert values["intensity_entropy"] > solid["intensity_entropy"]  # mixed composition is more heterogeneous


def test_bright_focus_fraction_counts_calcifications(make_ellipse: EllipseFactory) -> None:
    rng = np.random.default_rng(5)
    mask = make_ellipse((80, 80), (40, 40), (20, 20))
    image = np.clip(0.45 + 0.05 * rng.standard_normal((80, 80)), 0, 0.7).astype(np.float32)
    base = named(extract_features(image, mask))["bright_focus_fraction"]
    foci = np.zeros_like(mask)
    for r, c in [(30, 30), (35, 45), (45, 38), (50, 50), (40, 28)]:
        foci[r - 1 : r + 2, c - 1 : c + 2] = True  # five 3x3 punctate foci
    image[foci] = 1.0
    with_foci = named(extract_features(image, mask))["bright_focus_fraction"]
    assert with_foci - base == pytest.approx(foci.sum() / mask.sum(), abs=2e-3)


def test_glcm_texture_orders_smooth_and_coarse_nodules(make_ellipse: EllipseFactory) -> None:
    rng = np.random.default_rng(6)
    mask = make_ellipse((64, 64), (32, 32), (18, 18))
    # 0.484 is mid-bin for the default width 1/32 (0.5 would sit on a bin edge and split the noise in two bins)
    smooth = np.full((64, 64), 0.484) + 0.003 * rng.standard_normal((64, 64))
    rough = np.full((64, 64), 0.5) + 0.15 * rng.standard_normal((64, 64))
    a = named(extract_features(np.clip(smooth, 0, 1).astype(np.float32), mask))
    b = named(extract_features(np.clip(rough, 0, 1).astype(np.float32), mask))
    assert a["glcm_contrast"] < 0.5 < 5 < b["glcm_contrast"]
    assert a["glcm_homogeneity"] > 0.8 > 0.5 > b["glcm_homogeneity"]


def test_translation_invariance_checks_the_crop(make_scene: SceneFactory) -> None:
    """The nodule pasted into a larger canvas at another place gives the same values (the crop is exact)."""
    image, mask = make_scene(2)
    canvas = np.full((200, 260), 0.5, np.float32)
    canvas_mask = np.zeros((200, 260), bool)
    canvas[50 : 50 + image.shape[0], 90 : 90 + image.shape[1]] = image
    canvas_mask[50 : 50 + mask.shape[0], 90 : 90 + mask.shape[1]] = mask
    np.testing.assert_allclose(extract_features(canvas, canvas_mask), extract_features(image, mask), rtol=1e-12)


def test_largest_component_vs_all(make_ellipse: EllipseFactory) -> None:
    image = np.full((60, 120), 0.5, np.float32)
    big = make_ellipse((60, 120), (30, 30), (15, 20))
    small = make_ellipse((60, 120), (30, 95), (5, 5))
    image[small] = 0.1
    both = big | small
    largest = named(extract_features(image, both))
    only_big = named(extract_features(image, big))
    # the small component is ignored except that it is excluded from the ring (it is annotated tissue)
    assert largest["taller_than_wide"] == only_big["taller_than_wide"]
    assert largest["echo_ratio"] == pytest.approx(1.0)
    union = named(extract_features(image, both, RadiomicsParams(component="all")))
    assert union["echo_ratio"] < 1.0 and union["taller_than_wide"] < largest["taller_than_wide"]


def test_glcm_offsets_match_pyradiomics_angle_set() -> None:
    assert glcm_offsets((1,)) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    two = glcm_offsets((2,))
    assert len(two) == 8 and all(max(abs(r), abs(c)) == 2 for r, c in two)
    assert len(glcm_offsets((1, 2))) == 12
