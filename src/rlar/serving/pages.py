"""HTML of the viewer: the upload form, the result page and the error page (no scripts, no external resources)."""

from __future__ import annotations

import html
from typing import Any

from rlar.inference.html import STYLE, report_body
from rlar.inference.report import RESEARCH_NOTICE


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def storage_note(max_results: int) -> str:
    """What the server keeps of an upload, where and for how long (the page must say it truthfully)."""
    return ("Uploads are read and decoded in this server's memory and never written to disk. The report and "
            f"overlay of the last {max_results} results stay in its memory for the download links until newer "
            "results replace them or the server stops.")


def upload_form(model: dict[str, Any], max_mb: float, max_megapixels: float, max_results: int = 32) -> str:
    """The form (also shown above every result so the next image is one click away)."""
    phantom = ("<div class='warn'>This model was trained only on the synthetic phantom: its outputs on real "
               "ultrasound images mean nothing.</div>" if model.get("trained_on") == "phantom" else "")
    return (
        f"{phantom}<form id='upload' action='/predict' method='post' enctype='multipart/form-data'>"
        "<input type='file' id='file' name='file' accept='.png,.jpg,.jpeg,.tif,.tiff,.dcm,image/*,application/dicom'> "
        "<button type='submit' id='submit'>Predict</button></form>"
        f"<p class='muted'>PNG, JPEG, TIFF or DICOM; at most {max_mb:g} MB and {max_megapixels:g} megapixels. "
        f"Model: {html.escape(str(model.get('label')))}.</p><p class='muted' id='storage'>{storage_note(max_results)}</p>"
    )


def index_page(model: dict[str, Any], max_mb: float, max_megapixels: float, max_results: int = 32) -> str:
    return _page("rlar: thyroid nodule segmentation and TI-RADS",
                 f"<p class='notice'>{RESEARCH_NOTICE}</p>{upload_form(model, max_mb, max_megapixels, max_results)}")


def result_page(report: dict[str, Any], overlay_png: bytes, token: str, model: dict[str, Any], max_mb: float,
                max_megapixels: float, max_results: int = 32) -> str:
    downloads = (f"<p><a id='download-json' href='/result/{token}.json' download>Download JSON report</a> &middot; "
                 f"<a id='download-html' href='/result/{token}.html' download>Download HTML report</a></p>")
    return _page(f"rlar: {report.get('image', 'upload')}",
                 f"{upload_form(model, max_mb, max_megapixels, max_results)}{downloads}{report_body(report, overlay_png)}")


def error_page(status: int, message: str, model: dict[str, Any], max_mb: float, max_megapixels: float,
               max_results: int = 32) -> str:
    return _page("rlar: the image could not be used",
                 f"<div class='warn' id='error'>Error {status}: {html.escape(message)}</div>"
                 f"{upload_form(model, max_mb, max_megapixels, max_results)}")
