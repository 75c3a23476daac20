"""Predict many inputs (files and folders) into an output folder, continuing past unreadable files.

Per input: ``<stem>.mask.png`` (per frame for clips: ``<stem>.mask_f0000.png`` ...), ``<stem>.overlay.png``,
``<stem>.json`` and ``<stem>.html``, where ``<stem>`` is the input's path relative to the folder it was found in
(sanitised). The folder gets ``predictions.csv`` (one row per image) and, when some inputs failed,
``failures.csv``; failures are also returned so the caller can list them at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from rlar.data.io import sniff_format
from rlar.errors import DataError
from rlar.inference.html import render_report_html
from rlar.inference.outputs import check_writable, mask_png, overlay, png_bytes, safe_stem, write_bytes, write_json
from rlar.inference.predictor import ImageResult, Predictor
from rlar.inference.report import build_report, csv_row

#: File suffixes picked up when walking a folder (suffix-less files are taken when their content is DICOM).
INPUT_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")


@dataclass
class Expanded:
    """Inputs found under the given paths: (file, output stem) pairs, paths that do not exist, files ignored."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ignored: int = 0


@dataclass
class BatchSummary:
    reports: list[dict[str, Any]]
    failures: list[tuple[str, str]]
    csv_path: Path | None
    ignored: int = 0


def _is_dicom_without_suffix(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return sniff_format(handle.read(132)) == "dicom"
    except OSError:
        return False


def expand_inputs(paths: Sequence[str | Path]) -> Expanded:
    """Files named directly are taken as they are; folders are walked recursively in sorted order."""
    found = Expanded()
    used: set[str] = set()

    def add(file: Path, name: str) -> None:
        stem = safe_stem(name)
        unique, k = stem, 2
        while unique in used:
            unique, k = f"{stem}_{k}", k + 1
        used.add(unique)
        found.files.append((file, unique))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                suffix = file.suffix.lower()
                if suffix in INPUT_SUFFIXES or (suffix == "" and _is_dicom_without_suffix(file)):
                    add(file, str(relative.with_suffix("")).replace("/", "__"))
                else:
                    found.ignored += 1
        elif path.is_file():
            add(path, path.stem)
        else:
            found.missing.append(str(path))
    return found


def write_result(result: ImageResult, predictor: Predictor, out_dir: Path, stem: str,
                 arguments: dict[str, Any]) -> dict[str, Any]:
    """Write the mask(s), overlay, JSON and HTML of one result; returns its report."""
    files: dict[str, str] = {}
    key = result.key
    if key.mask is not None:
        if len(result.frames) == 1:
            write_bytes(out_dir / f"{stem}.mask.png", png_bytes(mask_png(key.mask)))
            files["mask"] = f"{stem}.mask.png"
        else:
            for i, frame in enumerate(result.frames):
                assert frame.mask is not None
                write_bytes(out_dir / f"{stem}.mask_f{i:04d}.png", png_bytes(mask_png(frame.mask)))
            files["mask"] = f"{stem}.mask_f*.png"
    picture = png_bytes(overlay(result.input.frames[result.key_frame], key.mask))
    write_bytes(out_dir / f"{stem}.overlay.png", picture)
    files["overlay"] = f"{stem}.overlay.png"
    files["json"] = f"{stem}.json"
    files["html"] = f"{stem}.html"
    report = build_report(result, predictor, arguments, files)
    write_json(out_dir / files["json"], report)
    write_bytes(out_dir / files["html"], render_report_html(report, picture).encode())
    return report


def predict_many(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path,
                 arguments: dict[str, Any] | None = None, progress: bool = True,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> BatchSummary:
    """Predict every input into ``out_dir``; a bad file is recorded as a failure and the run goes on."""
    out = Path(out_dir)
    check_writable(out)
    expanded = expand_inputs(inputs)
    failures: list[tuple[str, str]] = [(m, "file or folder not found") for m in expanded.missing]
    reports: list[dict[str, Any]] = []
    items: Iterable[tuple[Path, str]] = tqdm(expanded.files, desc="predicting", unit="image", disable=not progress)
    for file, stem in items:
        try:
            result = predictor.predict_one(file)
            report = write_result(result, predictor, out, stem, dict(arguments or {}))
        except DataError as err:
            if Path(err.item) == out or Path(err.item).parent == out:
                raise  # the output folder itself failed: every further image would fail the same way
            failures.append((str(file), err.reason))
            continue
        reports.append(report)
        if on_result is not None:
            on_result(report)
    csv_path = None
    if reports:
        csv_path = out / "predictions.csv"
        try:
            pd.DataFrame([csv_row(r) for r in reports]).to_csv(csv_path, index=False)
        except OSError as exc:
            raise DataError(csv_path, f"cannot write ({type(exc).__name__}: {exc})") from None
    if failures:
        pd.DataFrame(failures, columns=["file", "reason"]).to_csv(out / "failures.csv", index=False)
    return BatchSummary(reports, failures, csv_path, expanded.ignored)
