"""Every feature with a pyradiomics definition agrees with pyradiomics on the same image, mask and binning.

pyradiomics gets the 2D image as a one-slice 3D SimpleITK image with ``force2D=True`` and the settings
``RadiomicsParams.pyradiomics_settings()`` (same binWidth/binCount, same GLCM distances, symmetric GLCM averaged
over angles). The definitions are identical, so the tolerance is rel 1e-6 throughout (observed: ~1e-15). The one
formula difference, pyradiomics' eps = 2.2e-16 inside log2 of the entropy, changes values by < 1e-12.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlar.radiomics import FEATURE_NAMES, RadiomicsParams, extract_features
from rlar.radiomics.features import select_component
from tests.radiomics.conftest import EllipseFactory, SceneFactory

pytest.importorskip("radiomics", reason="pyradiomics is a test extra: pip install -e '.[test]'")
pytest.importorskip("SimpleITK", reason="SimpleITK is a test extra: pip install -e '.[test]'")

from rlar.radiomics.reference import PYRADIOMICS_EQUIVALENTS, make_extractor, pyradiomics_features  # noqa: E402

REL = 1e-6


def assert_agree(image: np.ndarray, mask: np.ndarray, params: RadiomicsParams, label: str) -> None:
    ours = dict(zip(FEATURE_NAMES, extract_features(image, mask, params).tolist(), strict=True))
    # pyradiomics describes the mask it is given: give it the part our features describe
    theirs = pyradiomics_features(image, select_component(mask, params.component), params, make_extractor(params))
    assert set(theirs) == set(PYRADIOMICS_EQUIVALENTS) and len(theirs) == 5
    for name, value in theirs.items():
        message = f"{label}: {name} ours={ours[name]} pyradiomics={value}"
        assert ours[name] == pytest.approx(value, rel=REL, abs=1e-12), message


def irregular_mask(seed: int, shape: tuple[int, int] = (72, 90)) -> np.ndarray:
    """A lobulated blob with pinholes and diagonal-only contacts: the hard cases of the 2D mesh (area, perimeter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    angle = np.arctan2(yy - shape[0] / 2, xx - shape[1] / 2)
    radius = np.hypot((yy - shape[0] / 2) / 0.8, xx - shape[1] / 2)
    mask: np.ndarray = radius <= 24 + 5 * np.sin(5 * angle + seed)
    mask &= rng.random(shape) > 0.04  # pinholes (holes in the mesh) and diagonal contacts
    return mask


PARAM_VARIANTS = {
    "default": RadiomicsParams(),
    "bin_count_16": RadiomicsParams(bin_width=None, bin_count=16),
    "width_0.05_distances_1_2": RadiomicsParams(bin_width=0.05, glcm_distances=(1, 2)),
}


@pytest.mark.parametrize("variant", list(PARAM_VARIANTS))
@pytest.mark.parametrize("seed", [0, 1])
def test_speckle_scene_agrees(make_scene: SceneFactory, variant: str, seed: int) -> None:
    image, mask = make_scene(seed, nodule_level=0.3 + 0.1 * seed, noise=0.1)
    assert_agree(image, mask, PARAM_VARIANTS[variant], f"scene {seed} {variant}")


@pytest.mark.parametrize("variant", list(PARAM_VARIANTS))
def test_irregular_mask_with_holes_agrees(variant: str) -> None:
    rng = np.random.default_rng(11)
    mask = irregular_mask(3)
    image = np.clip(0.4 + 0.2 * rng.standard_normal(mask.shape), 0, 1).astype(np.float32)
    params = PARAM_VARIANTS[variant].model_copy(update={"component": "all"})
    assert_agree(image, mask, params, f"irregular {variant}")


def test_largest_component_selection_agrees(make_ellipse: EllipseFactory) -> None:
    rng = np.random.default_rng(12)
    shape = (64, 128)
    mask = make_ellipse(shape, (32, 35), (20, 25)) | make_ellipse(shape, (30, 100), (10, 12))
    image = np.clip(0.5 + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    assert_agree(image, mask, RadiomicsParams(), "two components")


# --- real DDTI images (skipped when the development copy is absent) ---------------------------------------------


def _ddti_samples(root: Path, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """First n DDTI images with a mask, decoded by the DDTI source (polygons filled by the source)."""
    from rlar.data.sources import open_source

    source = open_source("ddti", root)
    out = []
    for index, info in enumerate(source.infos):
        if info.has_mask:
            sample = source[index]
            assert sample.mask is not None  # info.has_mask
            out.append((info.image_id, sample.image, sample.mask))
        if len(out) == n:
            break
    return out


@pytest.mark.ddti
def test_real_ddti_images_agree(ddti_root: Path) -> None:
    samples = _ddti_samples(ddti_root, 3)
    assert len(samples) == 3
    for image_id, image, mask in samples:
        assert_agree(image, mask, RadiomicsParams(), f"DDTI {image_id}")
