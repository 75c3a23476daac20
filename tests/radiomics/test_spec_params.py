"""The feature catalogue, leave-one-out helpers and parameter validation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from rlar.data.record import DESCRIPTORS
from rlar.radiomics import (
    FEATURE_FAMILIES,
    FEATURE_NAMES,
    FEATURES,
    RadiomicsParams,
    feature_indices,
    feature_mask,
    feature_subset,
)


def test_thirteen_unique_snake_case_names_each_tied_to_one_acr_criterion() -> None:
    assert len(FEATURE_NAMES) == 13 and len(set(FEATURE_NAMES)) == 13
    assert all(name.isidentifier() and name == name.lower() for name in FEATURE_NAMES)
    # every ACR criterion is represented, and nothing else is used
    assert {f.criterion for f in FEATURES} == set(DESCRIPTORS)
    assert all(f.definition for f in FEATURES)


def test_families_partition_the_features() -> None:
    assert set(FEATURE_FAMILIES) == {"shape_margin", "intensity_texture"}
    joined = [n for names in FEATURE_FAMILIES.values() for n in names]
    assert sorted(joined) == sorted(FEATURE_NAMES)
    # shape and margin criteria belong to the shape_margin family, the others to intensity_texture
    for f in FEATURES:
        expected = "shape_margin" if f.criterion in ("shape", "margin") else "intensity_texture"
        assert f.family == expected, f.name


def test_required_clinical_measures_are_present() -> None:
    for name in ("taller_than_wide", "echo_ratio", "bright_focus_fraction", "solidity"):
        assert name in FEATURE_NAMES
    twins = {f.name: f.pyradiomics_equivalent for f in FEATURES if f.pyradiomics_equivalent}
    assert twins == {
        "intensity_entropy": "firstorder:Entropy",
        "glcm_contrast": "glcm:Contrast",
        "glcm_homogeneity": "glcm:Idm",
        "elongation": "shape2D:Elongation",
        "circularity": "shape2D:Sphericity",
    }


def test_feature_subset_by_feature_family_and_criterion() -> None:
    assert feature_subset() == FEATURE_NAMES
    one_out = feature_subset("solidity")
    assert len(one_out) == 12 and "solidity" not in one_out
    assert list(one_out) == [n for n in FEATURE_NAMES if n != "solidity"]  # order kept
    assert set(feature_subset("shape_margin")) == set(FEATURE_FAMILIES["intensity_texture"])
    assert set(feature_subset("echogenicity")) == set(FEATURE_NAMES) - {"echo_ratio", "echo_contrast"}
    with pytest.raises(KeyError, match="not_a_feature"):
        feature_subset("not_a_feature")


def test_feature_indices_and_mask() -> None:
    assert feature_indices(["cystic_fraction", "bright_focus_fraction"]) == [0, 12]
    mask = feature_mask("taller_than_wide")
    assert sum(mask) == 12 and mask[FEATURE_NAMES.index("taller_than_wide")] is False
    with pytest.raises(KeyError, match="nope"):
        feature_indices(["nope"])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ring_width": 0}, "ring_width"),
        ({"bright_percentile": 100.0}, "bright_percentile"),
        ({"cystic_ratio": 1.5}, "cystic_ratio"),
        ({"glcm_distances": []}, "glcm_distances"),
        ({"glcm_distances": [1, 1]}, "glcm_distances"),
        ({"glcm_distances": [0]}, "glcm_distances"),
        ({"smoothing_sigma": -1.0}, "smoothing_sigma"),
        ({"component": "biggest"}, "component"),
        ({"ring_widht": 3}, "ring_widht"),  # typo: unknown keys are rejected, not ignored
    ],
)
def test_invalid_params_name_the_parameter(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        RadiomicsParams(**kwargs)


def test_binning_is_exactly_one_of_width_or_count() -> None:
    with pytest.raises(ValidationError, match="bin_width"):
        RadiomicsParams(bin_count=16)  # bin_width still has its default
    with pytest.raises(ValidationError, match="bin_count"):
        RadiomicsParams(bin_width=None)
    params = RadiomicsParams(bin_width=None, bin_count=16)
    assert params.pyradiomics_settings()["binCount"] == 16 and "binWidth" not in params.pyradiomics_settings()


def test_params_are_frozen_and_json_round_trips() -> None:
    # a list on purpose: validated into a sorted tuple
    params = RadiomicsParams(ring_width=7, glcm_distances=[2, 1])  # type: ignore[arg-type]
    assert params.glcm_distances == (1, 2)
    with pytest.raises(ValidationError):
        params.ring_width = 3
    again = RadiomicsParams(**json.loads(params.to_json()))
    assert again == params and again.to_json() == params.to_json()
    assert RadiomicsParams().to_json() != params.to_json()
