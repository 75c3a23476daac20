"""Scan-area detection on synthetic ultrasound-like screenshots."""

from __future__ import annotations

import numpy as np
import pytest

from rlar.data.crop import CropParams, crop_with_mask, pixels_outside, scan_area_box, union_with_mask

SCAN = (12, 125, 50, 200)  # (top, bottom, left, right) of the synthetic scan area in a 150x240 frame


def _text(image: np.ndarray, row: int, col: int, words: int) -> None:
    """Burn in 'words' of three 4x7-pixel glyphs, like scanner annotations (bright, small, separate)."""
    for w in range(words):
        for g in range(3):
            c = col + w * 30 + g * 6
            image[row : row + 7, c : c + 4] = 1.0


def _screenshot(seed: int = 0, seam: int | None = None) -> np.ndarray:
    """150x240 black frame, speckled scan area at SCAN, burned-in text and a grey bar in the margins."""
    rng = np.random.default_rng(seed)
    image = np.zeros((150, 240), dtype=np.float32)
    top, bottom, left, right = SCAN
    image[top:bottom, left:right] = rng.uniform(0.05, 0.6, (bottom - top, right - left))
    image[top + 70 : bottom, left:right] *= 0.15  # dim deep tissue: still scan area
    if seam is not None:
        image[top:bottom, seam : seam + 6] = 0.0  # dark seam between two panes
    _text(image, 20, 3, 1)  # scanner text in the left margin ("P100")
    _text(image, 60, 3, 1)
    _text(image, 133, 52, 5)  # reader's note under the scan ("TIRADS 4A (4B*)"), as wide as the scan
    image[55:90, 222:225] = np.linspace(0, 1, 35)[:, None]  # grey-scale bar in the right margin
    return image


def _assert_close_to_scan(box: tuple[int, int, int, int], tol: int = 3) -> None:
    for got, want in zip(box, SCAN):
        assert abs(got - want) <= tol, f"box {box} is not within {tol} px of the scan area {SCAN}"


def test_margin_text_is_cropped() -> None:
    image = _screenshot()
    box = scan_area_box(image)
    _assert_close_to_scan(box)
    top, bottom, left, right = box
    assert left > 20, "the text in the left margin must be outside the box"
    assert bottom < 133, "the note under the scan must be outside the box"
    assert right < 220, "the grey-scale bar must be outside the box"


def test_deterministic() -> None:
    image = _screenshot(seed=3)
    assert scan_area_box(image) == scan_area_box(image.copy()) == scan_area_box(image)


def test_dual_pane_seam_is_bridged() -> None:
    box = scan_area_box(_screenshot(seam=120))
    _assert_close_to_scan(box)  # both panes, not only the wider one


def test_fallback_to_full_image() -> None:
    black = np.zeros((50, 80), dtype=np.float32)
    assert scan_area_box(black) == (0, 50, 0, 80)
    blob = black.copy()
    blob[5:10, 5:10] = 1.0  # only a small bright component: text, not a scan
    assert scan_area_box(blob) == (0, 50, 0, 80)
    tiny_scan = black.copy()
    tiny_scan[10:25, 10:30] = 0.5  # below min_area_fraction of the frame -> treated as failure
    assert scan_area_box(tiny_scan) == (0, 50, 0, 80)
    assert scan_area_box(tiny_scan, CropParams(min_area_fraction=0.0, min_component_fraction=0.0))[0] > 0


def test_mask_is_kept_even_outside_the_scan_area() -> None:
    image = _screenshot()
    mask = np.zeros(image.shape, dtype=bool)
    mask[50:70, 40:70] = True  # 10 columns drawn into the left margin
    cropped_image, cropped_mask, info = crop_with_mask(image, mask)
    assert cropped_mask is not None
    assert int(cropped_mask.sum()) == int(mask.sum()), "no mask pixel may be lost"
    assert info["mask_pixels_cropped"] == 0
    scan_box, crop_box = info["scan_box"], info["crop_box"]
    assert isinstance(scan_box, tuple) and isinstance(crop_box, tuple)
    scan_left = scan_box[2]
    assert info["mask_pixels_outside_scan_area"] == 20 * (scan_left - 40) > 0
    top, bottom, left, right = crop_box
    assert left == 40 and cropped_image.shape == cropped_mask.shape == (bottom - top, right - left)
    np.testing.assert_array_equal(cropped_image, image[top:bottom, left:right])


def test_crop_without_mask() -> None:
    image = _screenshot()
    cropped, mask, info = crop_with_mask(image, None)
    assert mask is None and info["crop_box"] == info["scan_box"] and info["mask_pixels_cropped"] == 0
    crop_box = info["crop_box"]
    assert isinstance(crop_box, tuple)
    assert cropped.shape == (crop_box[1] - crop_box[0], crop_box[3] - crop_box[2])


def test_union_and_pixels_outside() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1, 8] = True
    assert pixels_outside(mask, (2, 9, 2, 7)) == 1
    assert union_with_mask((2, 9, 2, 7), mask) == (1, 9, 2, 9)
    assert union_with_mask((2, 9, 2, 7), np.zeros((10, 10), bool)) == (2, 9, 2, 7)


def test_bad_params_and_input() -> None:
    with pytest.raises(ValueError, match="band_fraction"):
        CropParams(band_fraction=0.0)
    with pytest.raises(ValueError, match="2D"):
        scan_area_box(np.zeros((4, 4, 3)))
