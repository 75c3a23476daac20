"""Synthetic ultrasound-like images shared by the radiomics tests (small, seeded, fast)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

#: the fixtures' factories: :func:`speckle_scene` (seed, then keyword options) and :func:`ellipse`
SceneFactory = Callable[..., tuple[np.ndarray, np.ndarray]]
EllipseFactory = Callable[[tuple[int, int], tuple[float, float], tuple[float, float]], np.ndarray]


def ellipse(shape: tuple[int, int], center: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Bool mask of an axis-aligned ellipse; radii = (row radius, column radius)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.asarray(((yy - center[0]) / radii[0]) ** 2 + ((xx - center[1]) / radii[1]) ** 2 <= 1.0)


def speckle_scene(
    seed: int,
    shape: tuple[int, int] = (96, 112),
    nodule_level: float = 0.3,
    background_level: float = 0.55,
    noise: float = 0.08,
    radii: tuple[float, float] = (22.0, 30.0),
) -> tuple[np.ndarray, np.ndarray]:
    """A speckled parenchyma with a darker (hypoechoic) elliptical nodule: (image float32 [0,1], mask bool)."""
    rng = np.random.default_rng(seed)
    mask = ellipse(shape, (shape[0] / 2, shape[1] / 2), radii)
    image = np.where(mask, nodule_level, background_level) + noise * rng.standard_normal(shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    return speckle_scene(0)


@pytest.fixture
def make_scene() -> SceneFactory:
    """The :func:`speckle_scene` factory."""
    return speckle_scene


@pytest.fixture
def make_ellipse() -> EllipseFactory:
    return ellipse
