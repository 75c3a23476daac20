"""Label spaces: map a source's TI-RADS value (its own scale) to a class index of the configured task.

Scales:
    ddti: 2, 3, 4a, 4b, 4c, 5 (Kwak/Horvath style, as in DDTI)
    acr:  TR1 .. TR5 (ACR TI-RADS 2017)
Tasks:
    multiclass: one class per level of the scale
    binary:     low risk (0) vs high risk (1); ddti 2-3 vs 4a-5, acr TR1-TR3 vs TR4-TR5
Unknown labels map to ``UNKNOWN`` (-1): the sample still serves segmentation, and the classification loss
ignores it. A value that is not on the scale is an error, never coerced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rlar.errors import ConfigError, DataError

UNKNOWN = -1

SCALE_LEVELS: dict[str, tuple[str, ...]] = {
    "ddti": ("2", "3", "4a", "4b", "4c", "5"),
    "acr": ("TR1", "TR2", "TR3", "TR4", "TR5"),
}
HIGH_RISK_LEVELS: dict[str, frozenset[str]] = {
    "ddti": frozenset({"4a", "4b", "4c", "5"}),
    "acr": frozenset({"TR4", "TR5"}),
}
TASKS: tuple[str, ...] = ("multiclass", "binary")


def canonical_level(value: object, scale: str) -> str | None:
    """Spell a raw TI-RADS value the canonical way for ``scale``; None for empty/missing.

    Raises DataError for a value that is not a level of the scale (e.g. "4d", or "TR6").
    """
    if scale not in SCALE_LEVELS:
        raise ConfigError("scale", f"unknown TI-RADS scale '{scale}'; choose one of {', '.join(SCALE_LEVELS)}")
    if value is None:
        return None
    text = str(value).strip()
    if text == "" or text.lower() in {"nan", "none", "na", "n/a", "unknown"}:
        return None
    if scale == "acr":
        match = re.fullmatch(r"(?:tr|tirads|ti-rads)?\s*([1-5])(?:\.0)?", text.lower())
        if match:
            return f"TR{match.group(1)}"
    else:
        lowered = text.lower().replace(" ", "")
        lowered = lowered[:-2] if lowered.endswith(".0") else lowered
        if lowered in SCALE_LEVELS["ddti"]:
            return lowered
    raise DataError(text, f"not a TI-RADS level on the {scale} scale ({', '.join(SCALE_LEVELS[scale])})")


def detect_scale(values: Sequence[object]) -> str:
    """Decide whether raw values are on the ACR (1-5, TR1-TR5) or DDTI (2,3,4a,4b,4c,5) scale.

    Any 4a/4b/4c means DDTI; any TRk or a 1 means ACR; plain 2..5 only is ambiguous and read as ACR
    (the international standard), which callers should report to the user.
    """
    texts = [str(v).strip().lower() for v in values if v is not None and str(v).strip() not in {"", "nan"}]
    if any(re.fullmatch(r"4[abc]", t) for t in texts):
        return "ddti"
    return "acr"


@dataclass(frozen=True)
class LabelSpace:
    """The classification target: ``task`` over the levels of ``scale``."""

    scale: str
    task: str = "multiclass"

    def __post_init__(self) -> None:
        if self.scale not in SCALE_LEVELS:
            raise ConfigError("scale", f"unknown TI-RADS scale '{self.scale}'; choose one of {', '.join(SCALE_LEVELS)}")
        if self.task not in TASKS:
            raise ConfigError("task", f"unknown classification task '{self.task}'; choose one of {', '.join(TASKS)}")

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.task == "binary":
            return ("low_risk", "high_risk")
        return SCALE_LEVELS[self.scale]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ordinal(self) -> bool:
        """Levels are ordered (quadratic kappa applies)."""
        return True

    def encode(self, level: str | None) -> int:
        """Class index for a canonical level of this scale, or UNKNOWN for None."""
        if level is None:
            return UNKNOWN
        levels = SCALE_LEVELS[self.scale]
        if level not in levels:
            raise DataError(level, f"not a TI-RADS level on the {self.scale} scale ({', '.join(levels)})")
        if self.task == "binary":
            return int(level in HIGH_RISK_LEVELS[self.scale])
        return levels.index(level)
