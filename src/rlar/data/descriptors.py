"""Normalise raw TI-RADS descriptor words (any dataset's or report's spelling) to the canonical vocabulary
in :data:`rlar.data.record.DESCRIPTOR_VALUES`. Shared by the adapters that read free-text descriptors
(folder, ThyroidXL, AIMI) and DDTI, so a DDTI spelling written in a folder's labels.csv (e.g. the calcification
value ``non``) means the same there as in the database.
"""

from __future__ import annotations

import re

import numpy as np

from rlar.data.record import DESCRIPTOR_VALUES, DESCRIPTORS
from rlar.errors import ConfigError, DataError

# Raw spellings seen in datasets and reports, keyed by their squashed form (see _squash), mapped to the
# canonical value. Canonical values map to themselves implicitly. Anything absent is reported, not guessed;
# combined ACR categories such as "hyperechoic or isoechoic" are deliberately absent because they do not
# name one canonical value.
_SYNONYMS: dict[str, dict[str, str]] = {
    "composition": {
        "almost_completely_cystic": "cystic",
        "cystic_or_almost_completely_cystic": "cystic",
        "purely_cystic": "cystic",
        "predominantly_cystic": "mixed_cystic",
        "mixed_predominantly_cystic": "mixed_cystic",
        "predominantly_solid": "mixed_solid",
        "mixed_predominantly_solid": "mixed_solid",
        "mixed_cystic_and_solid": "mixed",
        "mixed_solid_and_cystic": "mixed",
        "almost_completely_solid": "solid",
        "solid_or_almost_completely_solid": "solid",
        # DDTI's "dense": compact tissue without fluid, i.e. ACR "solid" (see rlar.data.sources.ddti)
        "dense": "solid",
    },
    "echogenicity": {
        "markedly_hypoechoic": "very_hypoechoic",
        "marked_hypoechoic": "very_hypoechoic",
        "hyperechogenic": "hyperechoic",
        "isoechogenic": "isoechoic",
        "hypoechogenic": "hypoechoic",
        # DDTI spellings, for users who label their own data in that style
        "hyperechogenicity": "hyperechoic",
        "isoechogenicity": "isoechoic",
        "hypoechogenicity": "hypoechoic",
        "marked_hypoechogenicity": "very_hypoechoic",
    },
    "shape": {
        "wider": "wider_than_tall",
        "not_taller_than_wide": "wider_than_tall",
        "taller": "taller_than_wide",
    },
    "margin": {
        "well_defined": "smooth",
        "well_defined_smooth": "smooth",
        "ill_defined_margin": "ill_defined",
        "lobulated": "lobulated_irregular",
        "irregular": "lobulated_irregular",
        "lobulated_or_irregular": "lobulated_irregular",
        "irregular_lobulated": "lobulated_irregular",
        # ACR lists spiculated and microlobulated margins under "lobulated or irregular"
        "spiculated": "lobulated_irregular",
        "microlobulated": "lobulated_irregular",
        "macrolobulated": "lobulated_irregular",
        "extra_thyroidal_extension": "extrathyroidal_extension",
        "extrathyroidal": "extrathyroidal_extension",
        "ete": "extrathyroidal_extension",
    },
    "echogenic_foci": {
        "no": "none",
        "non": "none",  # DDTI's spelling
        "no_calcifications": "none",
        "absent": "none",
        "no_echogenic_foci": "none",
        "large_comet_tail": "comet_tail",
        "large_comet_tail_artifacts": "comet_tail",
        "comet_tail_artifacts": "comet_tail",
        "macrocalcification": "macrocalcifications",
        "macro": "macrocalcifications",
        "coarse_calcifications": "macrocalcifications",
        "peripheral": "rim",
        "rim_calcifications": "rim",
        "peripheral_calcifications": "rim",
        "peripheral_rim_calcifications": "rim",
        "punctate_echogenic_foci": "punctate",
        # ACR: punctate echogenic foci "may be" microcalcifications; reports still use the older word.
        "microcalcifications": "punctate",
        "microcalcification": "punctate",
        "micro": "punctate",
    },
}

# ACR points of each echogenic-foci category: with several categories we keep the most suspicious one.
_FOCI_RANK: dict[str, int] = {"none": 0, "comet_tail": 0, "macrocalcifications": 1, "rim": 2, "punctate": 3}

_MISSING_TEXT = frozenset({"", "nan", "na", "n_a", "unknown", "not_available", "missing"})


def _squash(text: str) -> str:
    """Lower-case and fold every run of non-alphanumerics to one underscore ("Wider-than tall" -> wider_than_tall)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def normalise_descriptor(name: str, value: object) -> str | None:
    """Map a raw descriptor value to the canonical vocabulary of ``DESCRIPTOR_VALUES[name]``.

    Case, spaces, hyphens, slashes and underscores are ignored. Empty/missing values give None.
    Echogenic foci may list several categories ("macrocalcifications, punctate"): ACR scores each, and the
    single canonical slot keeps the most suspicious one (punctate > rim > macrocalcifications > comet tail/none).

    Raises DataError (item = the raw value) for a value that does not name exactly one canonical term.
    """
    if name not in DESCRIPTOR_VALUES:
        raise ConfigError("descriptor", f"unknown descriptor '{name}'; choose one of {', '.join(DESCRIPTORS)}")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    raw = str(value).strip()
    key = _squash(raw)
    if key in _MISSING_TEXT:
        return None
    allowed = DESCRIPTOR_VALUES[name]
    synonyms = _SYNONYMS[name]
    if key in allowed:
        return key
    if key in synonyms:
        return synonyms[key]
    if name == "echogenic_foci":
        parts = [p for p in re.split(r"\s*(?:[,;+&|]|\band\b)\s*", raw.lower()) if p.strip()]
        if len(parts) > 1:
            mapped = [normalise_descriptor(name, p) for p in parts]
            if any(m is None for m in mapped):
                raise DataError(raw, f"echogenic_foci list has an empty entry; expected terms among {', '.join(allowed)}")
            if "none" in mapped:
                raise DataError(raw, "echogenic_foci lists 'none' together with other foci (contradictory)")
            return max((m for m in mapped if m is not None), key=lambda m: _FOCI_RANK[m])
    raise DataError(raw, f"not a recognised {name} value (expected one of {', '.join(allowed)})")
