"""What a grid is made of: arms (a method plus config overrides) and the tables that compare them.

An *arm* is one trained configuration of the comparison: the method ``rlar``, or ``rlar`` with the penalty moved
to a mid-level layer, or ``vanilla_mtl`` trained on a noisy reader's labels. Every arm is trained on every fold
and seed of the grid, in its own folder ``<out>/<arm>/seed<k>/fold<j>``. A *table* is the report's unit: a set of
arms shown together, and the pairs of arms whose difference is tested (``(a, b)`` means "a minus b").

These are plain frozen dataclasses (no torch, no pydantic), so the report can read them back from ``grid.json``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rlar.errors import ConfigError

#: Arm names become folder names: letters, digits, '.', '_', '-' only.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Arm:
    """One trained configuration.

    name: folder name and row label (unique in a grid).
    method: the config's ``method`` (preset of architecture, backbone, strategy, guidance).
    overrides: ``key=value`` config overrides applied after the grid's own overrides.
    evaluate_truth: also score the test images against the phantom's true masks and levels (annotator study).
    meta: free annotations the report reads (e.g. the annotator level), JSON-compatible.
    """

    name: str
    method: str
    overrides: tuple[str, ...] = ()
    evaluate_truth: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not _SAFE_NAME.match(self.name):
            raise ConfigError(f"arm '{self.name}'", "an arm name may hold only letters, digits, '.', '_' and '-'")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["overrides"] = list(self.overrides)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Arm:
        return cls(name=raw["name"], method=raw["method"], overrides=tuple(raw.get("overrides", ())),
                   evaluate_truth=bool(raw.get("evaluate_truth", False)), meta=dict(raw.get("meta", {})))


@dataclass(frozen=True)
class TableSpec:
    """One table of the report: rows = ``arms`` (in this order), tested differences = ``comparisons``."""

    name: str
    title: str
    arms: tuple[str, ...]
    comparisons: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for a, b in self.comparisons:
            missing = [x for x in (a, b) if x not in self.arms]
            if missing:
                raise ConfigError(f"table '{self.name}'", f"comparison {a} vs {b} names arm(s) not in it: {missing}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "arms": list(self.arms),
                "comparisons": [list(pair) for pair in self.comparisons]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TableSpec:
        return cls(name=raw["name"], title=raw.get("title", raw["name"]), arms=tuple(raw["arms"]),
                   comparisons=tuple((str(a), str(b)) for a, b in raw.get("comparisons", ())))


def merge_arms(groups: list[list[Arm]]) -> list[Arm]:
    """Arms of several tables, each once, in first-seen order; the same name must mean the same arm.

    Tables share arms on purpose (every ablation compares with the main table's ``rlar``), so the run is trained
    once and reused; a name that two tables define differently would silently mix two configurations.
    """
    merged: dict[str, Arm] = {}
    for group in groups:
        for arm in group:
            seen = merged.get(arm.name)
            if seen is None:
                merged[arm.name] = arm
            elif (seen.method, seen.overrides, seen.evaluate_truth) != (arm.method, arm.overrides, arm.evaluate_truth):
                raise ConfigError(f"arm '{arm.name}'", f"defined twice differently: {seen} and {arm}")
    return list(merged.values())


def reference_comparisons(methods: Sequence[str], reference: str,
                          arm_name: Callable[[str], str] = str) -> tuple[tuple[str, str], ...]:
    """The comparisons of a table of ``methods``: each against ``reference`` (when the table has it), then rlar
    against guided_mtl, the clean test of RLAR's own effect (when the table has both and guided_mtl is not the
    reference). ``arm_name`` maps a method to its arm's name in the table (e.g. one annotator level's arms)."""
    pairs = tuple((arm_name(m), arm_name(reference)) for m in methods if m != reference) if reference in methods else ()
    if "rlar" in methods and "guided_mtl" in methods and reference != "guided_mtl":
        pairs += ((arm_name("rlar"), arm_name("guided_mtl")),)
    return pairs


__all__ = ["Arm", "TableSpec", "merge_arms", "reference_comparisons"]
