"""Prediction maps images to the network exactly as training did, and maps masks back to the input's frame."""

from __future__ import annotations

import numpy as np
import pytest

from rlar.data.crop import scan_area_box
from rlar.data.dataset import ThyroidDataset
from rlar.data.sources import open_source
from rlar.errors import ConfigError
from rlar.inference.geometry import prepare, source_crops


@pytest.mark.parametrize("shape", [(60, 90), (90, 60), (40, 40)])
def test_network_input_equals_the_training_input(shape: tuple[int, int]) -> None:
    source = open_source("phantom", None, n_cases=2, image_size=list(shape))
    dataset = ThyroidDataset(source, None, image_size=(64, 64))
    for i in range(2):
        array, geometry = prepare(source[i].image, (64, 64), crop=False)
        np.testing.assert_array_equal(array, dataset[i]["image"].numpy())
        assert geometry.crop_box == (0, shape[0], 0, shape[1])


def test_restore_inverts_resize_padding_and_crop() -> None:
    image = np.zeros((120, 200), dtype=np.float32)
    image[10:110, 40:180] = 0.4  # the scan area; black margins around it are cropped away
    image[40:80, 70:130] = 0.9  # a bright "nodule" of 40 x 60 pixels
    array, geometry = prepare(image, (64, 64), crop=True)
    assert geometry.crop_box == scan_area_box(image)  # the training crop rule
    assert np.allclose(geometry.crop_box, (10, 110, 40, 180), atol=3)  # the box smoothing widens it slightly
    restored = geometry.restore((array[0] > 0.65).astype(np.float32)) > 0.5
    truth = image > 0.65
    assert restored.shape == image.shape
    assert (restored ^ truth).sum() / truth.sum() < 0.1  # only a boundary band of resampling differences
    rows, cols = np.flatnonzero(restored.any(axis=1)), np.flatnonzero(restored.any(axis=0))
    assert abs(rows[0] - 40) <= 2 and abs(rows[-1] - 79) <= 2 and abs(cols[0] - 70) <= 2 and abs(cols[-1] - 129) <= 2
    top, _, left, _ = geometry.crop_box
    assert not restored[:top].any() and not restored[:, :left].any()  # nothing outside the crop box


def test_crop_follows_the_training_source() -> None:
    assert source_crops("ddti", {}) is True  # DDTI crops by default
    assert source_crops("ddti", {"crop": False}) is False
    assert source_crops("phantom", {}) is False
    assert source_crops("no-such-source", {}) is False
    assert source_crops("ddti", {"crop": "no"}) is False  # the validated option model converts it
    assert source_crops("ddti", {"n_cases": 3, "other": 1}) is True  # only crop matters here
    assert source_crops("phantom", {"crop": True}) is False  # the phantom has no crop option
    with pytest.raises(ConfigError, match="data.options.crop"):
        source_crops("ddti", {"crop": "sideways"})
