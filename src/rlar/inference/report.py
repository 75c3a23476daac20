"""The JSON report of one prediction: what was predicted, the evidence, and where it came from.

The same dictionary feeds the JSON file, the HTML report (:mod:`rlar.inference.html`), the CSV row of a folder
run and the web viewer, so all four always say the same thing. Field meanings are documented in docs/clinical.md.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np

from rlar.inference.predictor import ImageResult, Predictor

#: Shown on every report and page.
RESEARCH_NOTICE = "Research use only, not for diagnosis."

REPORT_FORMAT = "rlar-prediction"
REPORT_VERSION = 1


def _num(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def _probabilities(names: tuple[str, ...], probs: np.ndarray | None) -> dict[str, float] | None:
    return None if probs is None else {name: _num(p) for name, p in zip(names, probs)}  # type: ignore[misc]


def statement(result: ImageResult) -> str:
    """One sentence summarising the prediction, for people."""
    frames = f" (nodule-level over {len(result.frames)} frames)" if len(result.frames) > 1 else ""
    if result.nodule_found is False:
        text = "No nodule found: the predicted mask is empty."
        if result.category is not None:
            text += (f" The classifier's most likely category would be {result.category}, but with no nodule "
                     "segmented it should not be read as a nodule's category.")
        return text
    if result.category is None:
        return "Nodule segmented (segmentation-only model: no TI-RADS category)."
    assert result.class_prob is not None
    confidence = float(np.max(result.class_prob))
    return f"Predicted TI-RADS category {result.category} (probability {confidence:.2f}){frames}."


def build_report(result: ImageResult, predictor: Predictor, arguments: dict[str, Any] | None = None,
                 files: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON-ready report of ``result``; ``arguments`` (how it was called) and ``files`` go into it as given."""
    key = result.key
    evidence_rows = [
        {
            "feature": row.name,
            "acr_criterion": row.criterion,
            "family": row.family,
            "value": _num(row.value),
            "training_percentile": _num(row.percentile, 2),
            "training_z_score": _num(row.z_score, 4),
            "model_readout": _num(row.model_readout),
            "readout_supervised": row.supervised,
            "definition": row.definition,
        }
        for row in result.evidence
    ]
    frames = [
        {"index": i, "nodule_pixels": f.nodule_pixels,
         "class_probabilities": _probabilities(result.class_names, f.class_prob)}
        for i, f in enumerate(result.frames)
    ] if len(result.frames) > 1 else None
    readout = result.readout
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "notice": RESEARCH_NOTICE,
        "image": result.input.name,
        "input_kind": result.input.kind,
        "image_shape_hw": list(result.input.shape),
        "n_frames": len(result.frames),
        "key_frame": result.key_frame,
        "trained_on_phantom": predictor.trained_on_phantom,
        "warnings": list(result.warnings),
        "statement": statement(result),
        "nodule_found": result.nodule_found,
        "category": result.category,
        "class_probabilities": _probabilities(result.class_names, result.class_prob),
        "label_space": {"scale": predictor.label_space.scale, "task": predictor.label_space.task,
                        "classes": list(result.class_names)},
        "nodule_pixels": key.nodule_pixels,
        "measurements": result.measurements.to_json() if result.measurements is not None else None,
        "evidence": {
            "status": result.evidence_note or ("computed on the predicted mask" if evidence_rows else "not computed"),
            "percentiles_available": predictor.reference is not None,
            "features": evidence_rows,
        },
        "model_readout_available": readout is not None,
        "geometry": key.geometry.to_json(),
        "frames": frames,
        "files": dict(files or {}),
        "provenance": {
            **predictor.provenance(),
            "arguments": dict(arguments or {}),
            "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        },
    }


def csv_row(report: dict[str, Any]) -> dict[str, Any]:
    """The flat row of a folder run's CSV."""
    row: dict[str, Any] = {
        "image": report["image"],
        "nodule_found": report["nodule_found"],
        "category": report["category"],
        "n_frames": report["n_frames"],
        "nodule_pixels": report["nodule_pixels"],
    }
    for name, p in (report["class_probabilities"] or {}).items():
        row[f"prob_{name}"] = p
    m = report["measurements"]
    row["unit"] = m["unit"] if m else None
    for key in ("width", "height", "taller_than_wide"):
        row[key] = _num(m[key], 4) if m else None
    for feature in report["evidence"]["features"]:
        row[feature["feature"]] = feature["value"]
    row["json"] = report["files"].get("json")
    return row
