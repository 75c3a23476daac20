"""pyradiomics as the reference implementation for the features that have a pyradiomics twin.

Used by the agreement tests and the benchmark only; pyradiomics (and SimpleITK) are a test extra, imported here
through :func:`rlar._optional.require` so that the library itself never needs them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from rlar._optional import require
from rlar.radiomics.params import RadiomicsParams
from rlar.radiomics.spec import FEATURES

if TYPE_CHECKING:  # the test extra; pyradiomics has no type information (an Any), SimpleITK has
    import SimpleITK
    from radiomics.featureextractor import RadiomicsFeatureExtractor

# our feature name -> (pyradiomics feature class, feature name), from the catalogue.
PYRADIOMICS_EQUIVALENTS: dict[str, tuple[str, str]] = {
    f.name: tuple(f.pyradiomics_equivalent.split(":"))  # type: ignore[misc]
    for f in FEATURES
    if f.pyradiomics_equivalent is not None
}


def make_extractor(params: RadiomicsParams) -> RadiomicsFeatureExtractor:
    """A pyradiomics extractor computing only the equivalent features, with our binning and GLCM offsets."""
    radiomics = require("radiomics", extra="test", purpose="cross-checking radiomics features against pyradiomics")
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)  # pyradiomics logs a warning per image (e.g. about 2D shape) otherwise
    extractor = featureextractor.RadiomicsFeatureExtractor(**params.pyradiomics_settings())
    extractor.disableAllFeatures()
    enabled: dict[str, list[str]] = {}
    for feature_class, feature in PYRADIOMICS_EQUIVALENTS.values():
        enabled.setdefault(feature_class, []).append(feature)
    extractor.enableFeaturesByName(**enabled)
    return extractor


def to_sitk(image: np.ndarray, mask: np.ndarray) -> tuple[SimpleITK.Image, SimpleITK.Image]:
    """Wrap a 2D image and mask as one-slice 3D SimpleITK images (pyradiomics' force2D input)."""
    sitk = require("SimpleITK", extra="test", purpose="cross-checking radiomics features against pyradiomics")
    image_itk = sitk.GetImageFromArray(np.asarray(image, dtype=np.float64)[None])
    mask_itk = sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8)[None])
    return image_itk, mask_itk


def pyradiomics_features(
    image: np.ndarray, mask: np.ndarray, params: RadiomicsParams, extractor: RadiomicsFeatureExtractor | None = None
) -> dict[str, float]:
    """Our-named values of the pyradiomics-equivalent features for one image and mask (mask used as given)."""
    extractor = extractor if extractor is not None else make_extractor(params)
    image_itk, mask_itk = to_sitk(image, mask)
    result = extractor.execute(image_itk, mask_itk, label=1)
    return {
        ours: float(result[f"original_{feature_class}_{feature}"])
        for ours, (feature_class, feature) in PYRADIOMICS_EQUIVALENTS.items()
    }
