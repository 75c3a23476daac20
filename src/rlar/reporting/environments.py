"""Which machine trained each run, so that a table that mixes machines says so.

Every run records where it ran (``run.environment`` in ``metrics.json``, written by
:func:`rlar.training.environment.run_environment`). The same config and seed trained on two machines differ like a
change of seed (docs/recipes.md measured it), so a difference between arms trained on different machines includes
that machine effect. Runs written before the record existed have none ("not recorded").

Two runs share an environment when they agree on every key of :data:`NUMERIC_KEYS`, the parts of the record that
can change floating-point results; the host name and the OS version are left out (a container's host name says
nothing about its numerics). An environment is named by a short hash of those values, stable across reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Keys of ``run.environment`` that can change the numbers a training gives (kernels, rounding, reduction order).
NUMERIC_KEYS: tuple[str, ...] = ("device", "gpu", "cpu", "cpu_features", "torch_threads", "torch", "numpy")
#: Shown for runs without a record.
NOT_RECORDED = "not recorded"


def numeric_environment(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The :data:`NUMERIC_KEYS` part of a run's ``run.environment`` record; None when the run has no record."""
    if not isinstance(record, Mapping) or not record:
        return None
    return {key: record[key] for key in NUMERIC_KEYS if key in record}


def environment_id(numeric: Mapping[str, Any]) -> str:
    """Short stable name of a :func:`numeric_environment` (8 hex digits of a hash of its sorted JSON)."""
    text = json.dumps(dict(numeric), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def describe(numeric: Mapping[str, Any]) -> str:
    """One line for a person: device, CPU and its kernel features, threads, library versions."""
    parts = [str(numeric.get("gpu") or numeric.get("cpu") or "?")]
    if numeric.get("cpu_features"):
        parts.append("+".join(numeric["cpu_features"]))
    if numeric.get("device"):
        parts.append(f"device {numeric['device']}")
    if numeric.get("torch_threads") is not None:
        parts.append(f"{numeric['torch_threads']} torch thread(s)")
    parts += [f"{lib} {numeric[lib]}" for lib in ("torch", "numpy") if numeric.get(lib)]
    return ", ".join(parts)


@dataclass(frozen=True)
class EnvironmentSummary:
    """One environment of a set of runs: its name (:data:`NOT_RECORDED` for runs without a record), its
    description, and which arms' runs it trained."""

    name: str
    description: str
    n_runs: int
    arms: tuple[str, ...]


def summarize(runs: Iterable[tuple[str, Mapping[str, Any] | None]]) -> list[EnvironmentSummary]:
    """Environments of ``(arm, numeric environment or None)`` pairs, most runs first (unrecorded last)."""
    groups: dict[str, tuple[str, list[str]]] = {}
    for arm, numeric in runs:
        name, text = (environment_id(numeric), describe(numeric)) if numeric is not None else (NOT_RECORDED, "")
        groups.setdefault(name, (text, []))[1].append(arm)
    out = [EnvironmentSummary(name, text, len(arms), tuple(dict.fromkeys(arms))) for name, (text, arms) in groups.items()]
    return sorted(out, key=lambda s: (s.name == NOT_RECORDED, -s.n_runs, s.name))


def mixing_note(names: Iterable[str]) -> str:
    """A caption sentence when the runs behind one table come from more than one environment, else ''."""
    distinct = set(names)
    if len(distinct) <= 1:
        return ""
    recorded = len(distinct - {NOT_RECORDED})
    text = f"The runs of this table were trained in {recorded} recorded environment(s)"
    if NOT_RECORDED in distinct:
        text += " and some have no record"
    return (text + " (report.md lists which arm ran where): a difference between arms trained on different "
            "machines includes the machine's effect on training, which can be as large as a method's.")


__all__ = ["NOT_RECORDED", "NUMERIC_KEYS", "EnvironmentSummary", "describe", "environment_id", "mixing_note",
           "numeric_environment", "summarize"]
