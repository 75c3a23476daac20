"""Counts that describe a source: levels, descriptors, images per patient, missing items and skips."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rlar.data.grouping import Grouping, format_merged
from rlar.data.record import DESCRIPTORS, Skip
from rlar.data.sources.base import Source


@dataclass
class DataSummary:
    source: str
    scale: str | None
    cases: int
    images: int
    images_with_mask: int
    images_with_label: int
    patients_with_label: int
    level_counts: dict[str, int]
    descriptor_counts: dict[str, dict[str, int]]
    images_per_patient: dict[int, int]  # n images -> n patients
    skips: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Split groups that join several patients because their images are identical or near-identical
    #: (``{"patients": [...], "images": [...], "links": ["a=b", ...]}``); None when content was not compared.
    merged_groups: list[dict[str, list[str]]] | None = None
    content_lines: list[str] = field(default_factory=list)


def summarise_source(source: Source, grouping: Grouping | None = None) -> DataSummary:
    """Count everything in ``source.infos`` and ``source.skips`` (no pixels are decoded here); with ``grouping``
    (:func:`rlar.data.grouping.group_source`), also the groups merged by content."""
    infos = source.infos
    levels = Counter(info.tirads if info.tirads is not None else "unknown" for info in infos)
    descriptor_counts = {
        name: dict(Counter(info.descriptors.get(name) or "unknown" for info in infos)) for name in DESCRIPTORS
    }
    per_patient = Counter(info.patient_id for info in infos)
    labelled_patients = {info.patient_id for info in infos if info.tirads is not None}
    cases = getattr(source, "case_count", None) or len(per_patient)
    return DataSummary(
        source=source.name,
        scale=source.scale,
        cases=cases,
        images=len(infos),
        images_with_mask=sum(info.has_mask for info in infos),
        images_with_label=sum(info.tirads is not None for info in infos),
        patients_with_label=len(labelled_patients),
        level_counts=dict(levels),
        descriptor_counts=descriptor_counts,
        images_per_patient=dict(sorted(Counter(per_patient.values()).items())),
        skips=list(source.skips),
        notes=list(getattr(source, "notes", [])),
        merged_groups=None if grouping is None else [
            {"patients": list(g.patients), "images": list(g.images),
             "links": [f"{link.a}={link.b}" for link in g.links]} for g in grouping.merged
        ],
        content_lines=[] if grouping is None else format_merged(grouping),
    )


def format_summary(summary: DataSummary, level_order: tuple[str, ...] = ()) -> str:
    """Human-readable multi-line report (what ``rlar data summary`` prints)."""
    lines = [
        f"source: {summary.source} (TI-RADS scale: {summary.scale or 'n/a'})",
        f"cases: {summary.cases}",
        f"images: {summary.images}  (with mask: {summary.images_with_mask}, with TI-RADS: "
        f"{summary.images_with_label} from {summary.patients_with_label} cases)",
        "images per TI-RADS level:",
    ]
    ordered = [lvl for lvl in level_order if lvl in summary.level_counts]
    ordered += sorted(k for k in summary.level_counts if k not in ordered and k != "unknown")
    ordered += ["unknown"] if "unknown" in summary.level_counts else []
    lines += [f"  {lvl:>8}: {summary.level_counts[lvl]}" for lvl in ordered]
    lines.append("images per descriptor value:")
    for name, counts in summary.descriptor_counts.items():
        values = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: (kv[0] == "unknown", kv[0])))
        lines.append(f"  {name}: {values}")
    lines.append("images per case: " + ", ".join(f"{n} image(s): {c} cases" for n, c in summary.images_per_patient.items()))
    for note in summary.notes:
        lines.append(f"note: {note}")
    lines += summary.content_lines
    lines.append(f"skipped or incomplete items: {len(summary.skips)}")
    reasons = Counter(s.reason for s in summary.skips)
    lines += [f"  {s.item}: {s.reason}" for s in summary.skips]
    if len(reasons) > 1:
        lines.append("skips by reason: " + "; ".join(f"{r} ({n})" for r, n in reasons.most_common()))
    return "\n".join(lines)
