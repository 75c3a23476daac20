"""The 13-dimensional TI-RADS-aligned radiomics target r(x, mask) that ``h_tirads`` is trained to match.

- :mod:`.spec`: the feature catalogue (names, ACR criterion, family, definition, pyradiomics twin) and the
  leave-one-feature-out helpers.
- :mod:`.params`: :class:`RadiomicsParams`, validated extraction settings.
- :mod:`.features`: :func:`extract_features` for one image and mask.
- :mod:`.targets` / :mod:`.cache`: :func:`compute_targets` for a whole source, cached on disk with provenance.
- :mod:`.standardise`: :class:`Standardiser`, z-scoring fitted on the training fold.
- :mod:`.augmented`: :class:`AugmentedTargets`, targets shifted with the training augmentation.
- :mod:`.reference`: pyradiomics wrappers for cross-checks (needs the ``test`` extra).

See docs/radiomics.md.
"""

from rlar.radiomics.augmented import AugmentedTargets
from rlar.radiomics.features import extract_features
from rlar.radiomics.params import RadiomicsParams
from rlar.radiomics.spec import (
    FAMILIES,
    FEATURE_FAMILIES,
    FEATURE_NAMES,
    FEATURES,
    FEATURES_BY_NAME,
    FEATURES_VERSION,
    FeatureSpec,
    feature_indices,
    feature_mask,
    feature_subset,
)
from rlar.radiomics.standardise import Standardiser
from rlar.radiomics.targets import compute_targets

__all__ = [
    "AugmentedTargets",
    "FAMILIES",
    "FEATURE_FAMILIES",
    "FEATURE_NAMES",
    "FEATURES",
    "FEATURES_BY_NAME",
    "FEATURES_VERSION",
    "FeatureSpec",
    "RadiomicsParams",
    "Standardiser",
    "compute_targets",
    "extract_features",
    "feature_indices",
    "feature_mask",
    "feature_subset",
]
