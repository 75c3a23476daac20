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
from rlar.tasks import TASKS

#: Shown on every report and page.
RESEARCH_NOTICE = "Research use only, not for diagnosis."

REPORT_FORMAT = "rlar-prediction"
REPORT_VERSION = 1

#: Two categories whose probabilities differ by less than this are a tie: the report names both, not one.
#: 0.05 is about the spread of a class probability between retrainings of one DDTI recipe (docs/recipes.md), so a
#: smaller margin says nothing about which of the two the model prefers.
TIE_MARGIN = 0.05
#: An evidence value more than this many training standard deviations from the training mean, or outside the
#: training range (percentile 0 or 100), is flagged: the mask it was measured on is probably not a nodule outline.
Z_LIMIT = 4.0
#: A predicted region covering more than this share of the scan area (the crop) is flagged as implausibly large.
MAX_AREA_FRACTION = 0.5
#: Where the model card lives (the shipped model's numbers; a run's own metrics are in its metrics.json).
MODEL_CARD = "docs/model-card.md"


def _num(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def _probabilities(names: tuple[str, ...], probs: np.ndarray | None) -> dict[str, float] | None:
    return None if probs is None else {name: _num(p) for name, p in zip(names, probs)}  # type: ignore[misc]


def top_two(result: ImageResult) -> tuple[tuple[str, float], tuple[str, float]] | None:
    """The two most likely categories with their probabilities (None without a classifier or with one class)."""
    if result.class_prob is None or len(result.class_prob) < 2:
        return None
    order = np.argsort(-np.asarray(result.class_prob), kind="stable")
    first, second = int(order[0]), int(order[1])
    return ((result.class_names[first], float(result.class_prob[first])),
            (result.class_names[second], float(result.class_prob[second])))


def is_tie(result: ImageResult) -> bool:
    pair = top_two(result)
    return pair is not None and pair[0][1] - pair[1][1] < TIE_MARGIN


def confidence(result: ImageResult, predictor: Predictor | None = None) -> dict[str, Any]:
    """How sure the report may sound: the top-two margin, a tie, and quality flags (see the constants above).

    ``flags`` lists what a reader should distrust: a tie, a mask covering most of the scan area (or outside the
    training range of mask areas when the checkpoint records it as ``training_mask_area_fraction`` {min, max}),
    evidence values beyond the training range, several separate regions. ``line`` says it in one sentence.
    """
    flags: list[str] = []
    pair = top_two(result)
    margin = pair[0][1] - pair[1][1] if pair is not None else None
    tie = pair is not None and margin is not None and margin < TIE_MARGIN
    if tie and pair is not None:
        flags.append(f"tie: {pair[0][0]} and {pair[1][0]} differ by {margin:.3f} (< {TIE_MARGIN})")
    key = result.key
    area_fraction = None
    if key.mask is not None and result.nodule_found:
        top, bottom, left, right = key.geometry.crop_box
        scan = max(1, (bottom - top) * (right - left))
        area_fraction = float(key.mask[top:bottom, left:right].sum()) / scan
        known = predictor.members[0].checkpoint.get("training_mask_area_fraction") if predictor is not None else None
        if isinstance(known, dict) and {"min", "max"} <= set(known):
            if not float(known["min"]) <= area_fraction <= float(known["max"]):
                flags.append(f"mask covers {100 * area_fraction:.1f} % of the scan area, outside the training range "
                             f"({100 * float(known['min']):.1f}-{100 * float(known['max']):.1f} %)")
        elif area_fraction > MAX_AREA_FRACTION:
            flags.append(f"mask covers {100 * area_fraction:.0f} % of the scan area (implausibly large for a nodule)")
    beyond = [row.name for row in result.evidence
              if (row.z_score is not None and abs(row.z_score) > Z_LIMIT)
              or (row.percentile is not None and row.percentile in (0.0, 100.0))]
    if beyond:
        flags.append(f"evidence beyond the training range: {', '.join(beyond)}")
    if result.measurements is not None and len(result.measurements.regions) > 1:
        flags.append(f"{len(result.measurements.regions)} separate regions (measured one by one)")
    parts = []
    if margin is not None and pair is not None:
        parts.append(f"top-two margin {margin:.3f} ({pair[0][0]} {pair[0][1]:.3f} vs {pair[1][0]} {pair[1][1]:.3f})")
    if area_fraction is not None:
        parts.append(f"mask {100 * area_fraction:.1f} % of the scan area")
    line = "; ".join(parts) + (f". Check: {'; '.join(flags)}." if flags else ". No quality flag raised.")
    return {"top_two_margin": _num(margin, 4), "tie": tie, "tie_margin": TIE_MARGIN,
            "mask_area_fraction_of_scan": _num(area_fraction, 4), "flags": flags, "line": line.strip(),
            "model_card": MODEL_CARD}


def statement(result: ImageResult) -> str:
    """One sentence summarising the prediction, for people (and one more with the ACR descriptors when the model
    reads them)."""
    readings = descriptor_readings(result)
    text = _category_statement(result)
    if readings and result.nodule_found is not False:
        text += " ACR descriptors (model's reading): " + "; ".join(r["line"] for r in readings) + "."
    return text


def _category_statement(result: ImageResult) -> str:
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
    pair = top_two(result)
    if pair is not None and pair[0][1] - pair[1][1] < TIE_MARGIN:
        return (f"Tie between TI-RADS categories {pair[0][0]} and {pair[1][0]} (probabilities {pair[0][1]:.3f} and "
                f"{pair[1][1]:.3f}, margin below {TIE_MARGIN}): the model does not separate them{frames}.")
    best = float(np.max(result.class_prob))
    return f"Predicted TI-RADS category {result.category} (probability {best:.2f}){frames}."


def descriptor_readings(result: ImageResult) -> list[dict[str, Any]]:
    """The model's reading of each ACR descriptor it was trained on (the optional tasks, docs/descriptors.md), in
    ACR words: ``{"descriptor", "value", "probability", "probabilities", "line"}`` with ``line`` such as
    ``"composition: solid, p 0.81"``. Empty for a model without descriptor heads."""
    readings = []
    for name, probs in result.task_prob.items():
        spec = TASKS[name]
        best = int(np.argmax(probs))
        word = spec.classes[best].replace("_", " ")
        descriptor = (spec.descriptor or name).replace("_", " ")
        readings.append({
            "descriptor": spec.descriptor or name,
            "value": spec.classes[best],
            "probability": _num(probs[best], 4),
            "probabilities": _probabilities(spec.classes, probs),
            "line": f"{descriptor}: {word}, p {float(probs[best]):.2f}",
        })
    return readings


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
        "tie": is_tie(result),
        "confidence": confidence(result, predictor),
        "class_probabilities": _probabilities(result.class_names, result.class_prob),
        "acr_descriptors": descriptor_readings(result),
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
    for reading in report.get("acr_descriptors") or []:
        row[reading["descriptor"]] = reading["value"]
        row[f"{reading['descriptor']}_p"] = reading["probability"]
    m = report["measurements"]
    row["unit"] = m["unit"] if m else None
    for key in ("width", "height", "taller_than_wide"):
        row[key] = _num(m[key], 4) if m else None
    for feature in report["evidence"]["features"]:
        row[feature["feature"]] = feature["value"]
    row["json"] = report["files"].get("json")
    return row
