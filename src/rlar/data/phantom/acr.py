"""ACR TI-RADS 2017 points and levels for a set of nodule descriptors.

Points follow the chart of the ACR TI-RADS white paper (Tessler et al., J Am Coll Radiol 2017;14:587-595):

============== ============================================================================
composition    cystic / almost completely cystic 0, spongiform 0, mixed cystic and solid 1,
               solid / almost completely solid 2
echogenicity   anechoic 0, hyper- or isoechoic 1, hypoechoic 2, very hypoechoic 3
shape          wider-than-tall 0, taller-than-wide 3
margin         smooth 0, ill-defined 0, lobulated/irregular 2, extrathyroidal extension 3
echogenic foci none 0, large comet-tail 0, macrocalcifications 1, peripheral (rim) 2, punctate 3;
               *all* foci present are added (choose one or more)
============== ============================================================================

Two rules of the chart that a plain sum would miss:

* Spongiform nodules: the chart's footnote says not to add points for other categories, so a spongiform
  nodule totals 0 (TR1) whatever else is written.
* Levels: TR1 = 0, TR2 = 2, TR3 = 3, TR4 = 4-6, TR5 >= 7 points. The chart is silent on a total of exactly 1
  point (reachable only as cystic + macrocalcification). We map 1 point to **TR2**: a nodule that earned a
  suspicious point is not called benign, which is the conservative reading and the one online ACR
  calculators use. This is a documented choice, not part of the chart.

The three DDTI-style composition spellings ``mixed``, ``mixed_cystic`` and ``mixed_solid`` all mean "mixed
cystic and solid" (1 point) on the ACR chart; the phantom itself writes ``mixed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rlar.data.record import DESCRIPTOR_VALUES
from rlar.errors import DataError

ACR_LEVELS: tuple[str, ...] = ("TR1", "TR2", "TR3", "TR4", "TR5")

# Per-descriptor points of the ACR chart (values spelled as in rlar.data.record.DESCRIPTOR_VALUES).
ACR_POINTS: dict[str, dict[str, int]] = {
    "composition": {
        "cystic": 0,
        "spongiform": 0,
        "mixed": 1,
        "mixed_cystic": 1,
        "mixed_solid": 1,
        "solid": 2,
    },
    "echogenicity": {"anechoic": 0, "hyperechoic": 1, "isoechoic": 1, "hypoechoic": 2, "very_hypoechoic": 3},
    "shape": {"wider_than_tall": 0, "taller_than_wide": 3},
    "margin": {"smooth": 0, "ill_defined": 0, "lobulated_irregular": 2, "extrathyroidal_extension": 3},
    "echogenic_foci": {"none": 0, "comet_tail": 0, "macrocalcifications": 1, "rim": 2, "punctate": 3},
}

# Sanity: the point table covers exactly the canonical vocabulary (a new value must get its points here).
assert all(set(ACR_POINTS[k]) == set(v) for k, v in DESCRIPTOR_VALUES.items())


def _foci_values(value: object) -> list[str]:
    """Echogenic foci may be one value or several ("choose one or more"): a list/tuple or a '+'-joined string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split("+") if part.strip()]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    raise DataError("echogenic_foci", f"expected a value or a list of values, got {value!r}")


def acr_points(descriptors: Mapping[str, object]) -> int:
    """Total ACR TI-RADS points of a nodule.

    ``descriptors`` maps the five keys of :data:`DESCRIPTOR_VALUES` to canonical values; ``echogenic_foci``
    may list several foci (their points add, as the chart says). Raises :class:`DataError` naming the key when
    a descriptor is missing/unknown (None) or not in the vocabulary: points from partial descriptors would be
    silently too low.
    """
    total = 0
    for key, table in ACR_POINTS.items():
        if key not in descriptors or descriptors[key] is None:
            raise DataError(key, "descriptor missing or unknown; ACR points need all five descriptors")
        values = _foci_values(descriptors[key]) if key == "echogenic_foci" else [str(descriptors[key])]
        if not values:
            raise DataError(key, "no echogenic foci value given (use 'none')")
        for value in values:
            if value not in table:
                raise DataError(key, f"'{value}' is not an ACR value; choose one of {', '.join(table)}")
        # "none" alongside a real focus is contradictory; points would still be right, but flag the typo.
        if key == "echogenic_foci" and "none" in values and len(values) > 1:
            raise DataError(key, f"'none' combined with other foci {values}")
        total += sum(table[v] for v in values)
    if descriptors["composition"] == "spongiform":
        # Chart footnote: spongiform nodules get no points from the other categories.
        return 0
    return total


def acr_level(points: int) -> str:
    """ACR TI-RADS level ("TR1".."TR5") of a point total; 1 point maps to TR2 (see module docstring)."""
    if isinstance(points, bool) or int(points) != points or points < 0:
        raise DataError(str(points), "ACR points must be a non-negative integer")
    if points == 0:
        return "TR1"
    if points <= 2:
        return "TR2"
    if points == 3:
        return "TR3"
    if points <= 6:
        return "TR4"
    return "TR5"


__all__ = ["ACR_LEVELS", "ACR_POINTS", "acr_level", "acr_points"]
