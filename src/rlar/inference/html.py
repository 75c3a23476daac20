"""A self-contained HTML page per prediction: overlay, category and probabilities, measurements, evidence table.

Self-contained means no network at all: styles are inline and the overlay is embedded as a base64 PNG, so the file
can be mailed, archived or opened on an offline workstation. Every value that came from a user (file names) is
HTML-escaped. The page carries the "research use only, not for diagnosis" notice.
"""

from __future__ import annotations

import base64
import html
from typing import Any

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1b1f24;max-width:70rem}
h1{font-size:1.3rem;margin:0 0 .3rem} h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
.notice{background:#fff3cd;border:1px solid #e0c36a;padding:.5rem .8rem;border-radius:4px;font-weight:600}
.warn{background:#fde2e1;border:1px solid #e49c98;padding:.4rem .8rem;border-radius:4px;margin:.3rem 0}
.grid{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start}
img.overlay{max-width:36rem;width:100%;border:1px solid #ccc}
table{border-collapse:collapse;font-size:.9rem} td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{background:#f1f3f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.category{font-size:1.6rem;font-weight:700} tr.predicted{background:#fde68a;font-weight:700}
tr.tied{background:#e5e7eb;font-weight:700} .category.tied{font-weight:400;color:#555}
.tie{font-weight:700;color:#9a3412} .confidence{font-size:.9rem} .confidence.flagged{color:#9a3412} .muted{color:#666;font-size:.85rem}
.bar{display:inline-block;height:.7rem;background:#4c78a8;vertical-align:middle}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if 0 < abs(value) < 1e-3 else f"{value:.{digits}f}"
    return html.escape(str(value))


def probability_table(report: dict[str, Any]) -> str:
    probs = report.get("class_probabilities")
    if not probs:
        return "<p class='muted'>This model has no TI-RADS classifier.</p>"
    category = report.get("category")
    tied = set()
    if report.get("tie"):  # the two top classes are tied: highlight both, neither as "the" answer
        tied = set(sorted(probs, key=lambda k: -probs[k])[:2])

    def row_class(name: str) -> str:
        if name in tied:
            return " class='tied'"
        return " class='predicted'" if name == category else ""

    rows = "".join(
        f"<tr{row_class(name)}><td>{html.escape(name)}</td><td class='num'>{p:.3f}</td>"
        f"<td><span class='bar' style='width:{max(0.0, p) * 10:.2f}rem'></span></td></tr>"
        for name, p in probs.items()
    )
    return f"<table id='probabilities'><tr><th>class</th><th>probability</th><th></th></tr>{rows}</table>"


def measurement_table(report: dict[str, Any]) -> str:
    m = report.get("measurements")
    if not m:
        return "<p class='muted'>No measurements (no nodule segmented).</p>"
    unit = html.escape(m["unit"])
    return (
        "<table id='measurements'>"
        f"<tr><th>width</th><td class='num'>{_fmt(m['width'], 2)} {unit}</td></tr>"
        f"<tr><th>height</th><td class='num'>{_fmt(m['height'], 2)} {unit}</td></tr>"
        f"<tr><th>taller-than-wide (height / width)</th><td class='num'>{_fmt(m['taller_than_wide'], 3)}</td></tr>"
        f"<tr><th>area</th><td class='num'>{_fmt(m['area'], 2)} {unit}&sup2;</td></tr>"
        f"</table><p class='muted'>{html.escape(m['note'])}</p>"
    )


def evidence_table(report: dict[str, Any]) -> str:
    evidence = report.get("evidence") or {}
    features = evidence.get("features") or []
    status = html.escape(str(evidence.get("status", "")))
    if not features:
        return f"<p class='muted' id='evidence-status'>{status}</p>"
    rows = "".join(
        "<tr>"
        f"<td title='{html.escape(f['definition'], quote=True)}'>{html.escape(f['feature'])}</td>"
        f"<td>{html.escape(f['acr_criterion'])}</td>"
        f"<td class='num'>{_fmt(f['value'])}</td>"
        f"<td class='num'>{_fmt(f['training_percentile'], 1)}</td>"
        f"<td class='num'>{_fmt(f['training_z_score'], 2)}</td>"
        f"<td class='num'>{_fmt(f['model_readout']) if f['readout_supervised'] else '&ndash;'}</td>"
        "</tr>"
        for f in features
    )
    return (
        "<table id='evidence'><tr><th>feature</th><th>ACR criterion</th><th>value on predicted mask</th>"
        "<th>training percentile</th><th>training z-score</th><th>model read-out (h_tirads)</th></tr>"
        f"{rows}</table><p class='muted' id='evidence-status'>{status}. Percentile: share of training nodules at "
        "or below this value; z-score: against the training mean and standard deviation; read-out: what the "
        "network's guided embedding encodes for the same feature (only for models trained with guidance).</p>"
    )


def descriptor_list(report: dict[str, Any]) -> str:
    """The model's ACR descriptor readings ("composition: solid, p 0.81"), or "" for a model without them."""
    readings = report.get("acr_descriptors") or []
    if not readings:
        return ""
    items = "".join(f"<li>{html.escape(r['line'])}</li>" for r in readings)
    return (f"<h2>ACR descriptors (model's reading)</h2><ul id='descriptors'>{items}</ul>"
            "<p class='muted'>Auxiliary predictions trained on the readers' descriptors of the training images "
            "(docs/descriptors.md); p is the model's probability of the named value.</p>")


def report_body(report: dict[str, Any], overlay_png: bytes | None) -> str:
    """The report's inner HTML (shared by the standalone page and the web viewer)."""
    warnings = "".join(f"<div class='warn'>{html.escape(w)}</div>" for w in report.get("warnings", []))
    image = ""
    if overlay_png is not None:
        data = base64.b64encode(overlay_png).decode("ascii")
        image = f"<img class='overlay' id='overlay' alt='overlay of the predicted nodule contour' src='data:image/png;base64,{data}'>"
    category = report.get("category")
    probs = report.get("class_probabilities") or {}
    runner_up = sorted(probs, key=lambda k: -probs[k])[1] if report.get("tie") and len(probs) > 1 else None
    tie_html = (f" <span class='tie' id='tie'>tied with {html.escape(runner_up)}: the model does not separate "
                "them</span>" if runner_up is not None else "")
    css = "category tied" if runner_up is not None else "category"  # a tie is not shown as one bold answer
    category_html = (f"<div>TI-RADS category: <span class='{css}' id='category'>{html.escape(str(category))}</span>"
                     f"{tie_html} <span class='muted'>({html.escape(report['label_space']['scale'])} scale)</span>"
                     "</div>" if category is not None else "")
    sure = report.get("confidence") or {}
    if sure:
        flagged = " flagged" if sure.get("flags") else ""
        category_html += (f"<p class='confidence{flagged}' id='confidence'>How sure: {html.escape(sure['line'])} "
                          f"Cross-validated performance of the model: see its model card "
                          f"(<a href='{html.escape(sure['model_card'], quote=True)}'>"
                          f"{html.escape(sure['model_card'])}</a>).</p>")
    provenance = report.get("provenance", {})
    models = ", ".join(f"{html.escape(str(m.get('checkpoint')))} (sha256 {html.escape(str(m.get('sha256', ''))[:12])}…)"
                       for m in provenance.get("models", []))
    return (
        f"<p class='notice'>{html.escape(report.get('notice', ''))}</p>{warnings}"
        f"<div class='grid'><div>{image}</div><div>"
        f"<p id='statement'>{html.escape(report.get('statement', ''))}</p>{category_html}"
        f"<h2>Class probabilities</h2>{probability_table(report)}{descriptor_list(report)}"
        f"<h2>Measurements</h2>{measurement_table(report)}</div></div>"
        f"<h2>Evidence: TI-RADS-aligned radiomics of the predicted nodule</h2>{evidence_table(report)}"
        f"<h2>Provenance</h2><p class='muted'>rlar {html.escape(str(provenance.get('rlar_version', '')))}; "
        f"models: {models}; trained on: {html.escape(str(provenance.get('trained_on', '')))}; "
        f"test-time flip: {_fmt(provenance.get('tta'))}; created {html.escape(str(provenance.get('created_utc', '')))}</p>"
    )


def render_report_html(report: dict[str, Any], overlay_png: bytes | None) -> str:
    """A complete, self-contained HTML document for one prediction report (see :mod:`rlar.inference.report`)."""
    title = f"rlar report: {report.get('image', '')}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{report_body(report, overlay_png)}</body></html>\n"
    )


STYLE = _STYLE
