"""The ACR TI-RADS descriptor vocabulary: the canonical values every data source, the phantom, the radiomics
feature table and the optional descriptor tasks (:mod:`rlar.tasks`) speak.

ACR TI-RADS 2017 lexicon (Tessler et al., J Am Coll Radiol 2017); DDTI-only values are kept where ACR has no twin
(``mixed`` composition, ``anechoic``). Raw spellings are mapped onto these values by :mod:`rlar.data.descriptors`.
"""

from __future__ import annotations

DESCRIPTOR_VALUES: dict[str, tuple[str, ...]] = {
    "composition": ("cystic", "spongiform", "mixed_cystic", "mixed_solid", "mixed", "solid"),
    "echogenicity": ("anechoic", "hyperechoic", "isoechoic", "hypoechoic", "very_hypoechoic"),
    "shape": ("wider_than_tall", "taller_than_wide"),
    "margin": ("smooth", "ill_defined", "lobulated_irregular", "extrathyroidal_extension"),
    "echogenic_foci": ("none", "comet_tail", "macrocalcifications", "rim", "punctate"),
}
DESCRIPTORS: tuple[str, ...] = tuple(DESCRIPTOR_VALUES)
