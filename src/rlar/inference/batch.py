"""Predict many inputs (files and folders) into an output folder, continuing past unreadable files.

Per input: ``<stem>.mask.png`` (per frame for clips: ``<stem>.mask_f0000.png`` ...), ``<stem>.overlay.png``,
``<stem>.json`` and ``<stem>.html``, where ``<stem>`` is the input's path relative to the folder it was found in
(sanitised). The folder gets ``predictions.csv`` (one row per image) and, when some inputs failed,
``failures.csv``; failures are also returned so the caller can list them at the end.

It never writes over a file it did not create in this run: an output folder that already holds a file this run
would write, or that holds inputs, is refused before any work unless ``overwrite`` (and even then an input is
never written over); files named like its own outputs (``*.mask.png``, ``*.mask_f0000.png``, ``*.overlay.png``)
are never taken as inputs, so a ground-truth ``case1.mask.png`` beside ``case1.png`` is not predicted as an image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from rlar.data.files import display_name, list_folder
from rlar.data.io import sniff_format
from rlar.environment import check_writable
from rlar.errors import DataError
from rlar.inference.html import render_report_html
from rlar.inference.outputs import mask_png, overlay, png_bytes, safe_stem, write_bytes, write_json
from rlar.inference.predictor import ImageResult, Predictor
from rlar.inference.report import build_report, csv_row

#: File suffixes picked up when walking a folder (suffix-less files are taken when their content is DICOM).
INPUT_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")

#: Per-input output names (``{stem}`` + these); clips add ``.mask_f<frame>.png``, DICOM inputs ``.seg.dcm``.
OUTPUT_SUFFIXES: tuple[str, ...] = (".mask.png", ".overlay.png", ".json", ".html", ".seg.dcm")
#: Files of the whole run.
RUN_FILES: tuple[str, ...] = ("predictions.csv", "failures.csv")
_OWN_OUTPUT = re.compile(r"\.(mask|overlay|mask_f\d{4})\.png$|\.seg\.dcm$", re.IGNORECASE)


def is_own_output_name(name: str) -> bool:
    """Whether a file name is one ``rlar predict`` writes (never an input: it may be a reference mask)."""
    return bool(_OWN_OUTPUT.search(name))


@dataclass
class Expanded:
    """Inputs found under the given paths: (file, output stem) pairs, paths that do not exist, files ignored."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unusable: list[tuple[str, str]] = field(default_factory=list)  # dangling links, loops, FIFOs: (name, reason)
    ignored: int = 0
    own_outputs: int = 0  # files named like predict's outputs, skipped


@dataclass
class BatchSummary:
    reports: list[dict[str, Any]]
    failures: list[tuple[str, str]]
    csv_path: Path | None
    ignored: int = 0
    own_outputs: int = 0


def _is_dicom_without_suffix(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return sniff_format(handle.read(132)) == "dicom"
    except OSError:
        return False


def expand_inputs(paths: Sequence[str | Path], out_dir: str | Path | None = None) -> Expanded:
    """Files named directly are taken as they are; folders are walked recursively in sorted order, leaving out
    ``out_dir`` and files named like predict's own outputs."""
    skip_dir = Path(out_dir).resolve() if out_dir is not None else None
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
            listing = list_folder(path, recursive=True)  # loops, dangling links and FIFOs come back with a reason
            found.unusable.extend((display_name(entry), reason) for entry, reason in listing.unusable)
            for file in listing.files:
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                if skip_dir is not None and skip_dir != path.resolve() and file.resolve().is_relative_to(skip_dir):
                    continue  # an earlier run's outputs in a subfolder of the input folder
                if is_own_output_name(file.name):
                    found.own_outputs += 1
                    continue
                suffix = file.suffix.lower()
                if suffix in INPUT_SUFFIXES or (suffix == "" and _is_dicom_without_suffix(file)):
                    add(file, display_name(relative.with_suffix("")).replace("/", "__"))
                else:
                    found.ignored += 1
        elif path.is_file():
            add(path, display_name(path.stem))
        else:
            found.missing.append(str(path))
    return found


def planned_outputs(out: Path, stems: Sequence[str]) -> list[Path]:
    """Files of ``out`` that predicting ``stems`` may write and that already exist."""
    existing = [out / name for name in RUN_FILES if (out / name).exists()]
    for stem in stems:
        existing += [out / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES if (out / f"{stem}{suffix}").exists()]
        existing += sorted(out.glob(f"{glob_escape(stem)}.mask_f[0-9][0-9][0-9][0-9].png"))
    return existing


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def check_output_folder(out: Path, expanded: Expanded, overwrite: bool) -> None:
    """Refuse (DataError naming the folder) to write over files this run did not create (module docstring)."""
    resolved = out.resolve()
    inside = [f for f, _ in expanded.files if f.resolve().is_relative_to(resolved)]
    existing = planned_outputs(out, [stem for _, stem in expanded.files])
    inputs = {f.resolve() for f, _ in expanded.files}
    clobbered = [p for p in existing if p.resolve() in inputs]
    if clobbered:
        raise DataError(out, f"writing the outputs would replace input {clobbered[0].name}: choose another --out")
    if overwrite:
        return
    if existing:
        listed = ", ".join(p.name for p in existing[:3]) + (f" (+{len(existing) - 3} more)" if len(existing) > 3 else "")
        raise DataError(out, f"already holds {len(existing)} file(s) this run would write ({listed}): choose an "
                             "empty folder, or add --overwrite to replace them")
    if inside:
        raise DataError(out, f"holds inputs of this run ({inside[0].name}): choose another --out, or add "
                             "--overwrite to write beside them")


def _write_dicom_seg(result: ImageResult, predictor: Predictor, source: Path, out_dir: Path,
                     stem: str) -> dict[str, str]:
    """The DICOM Segmentation of a still DICOM input ({"dicom_seg": name}); a clip, or a source highdicom cannot
    derive a Segmentation from, gets a warning in the report instead, and the other outputs are still written."""
    from rlar.inference.dicom_seg import write_segmentation

    if len(result.frames) > 1:
        result.warnings.append("no DICOM Segmentation for a multi-frame input (clips): the per-frame PNG masks hold "
                               "the prediction")
        return {}
    target = out_dir / f"{stem}.seg.dcm"
    try:
        notes = write_segmentation(source, [result.key.mask], target, predictor.describe())  # type: ignore[list-item]
    except DataError as err:
        if Path(err.item) == target:
            raise  # the output folder failed: not a property of this image
        result.warnings.append(f"no DICOM Segmentation: {err.reason}")
        return {}
    result.warnings.extend(notes)
    return {"dicom_seg": target.name}


def write_result(result: ImageResult, predictor: Predictor, out_dir: Path, stem: str,
                 arguments: dict[str, Any], source: Path | None = None, report: bool = True) -> dict[str, Any]:
    """Write the mask(s), overlay, JSON and HTML of one result (and, for a DICOM ``source`` file, its DICOM
    Segmentation ``<stem>.seg.dcm``); returns its report. ``report=False`` (the fast path) writes the mask(s)
    and the JSON only: no overlay, no HTML page."""
    files: dict[str, str] = {}
    key = result.key
    if source is not None and result.input.kind == "dicom" and key.mask is not None:
        files.update(_write_dicom_seg(result, predictor, source, out_dir, stem))
    if key.mask is not None:
        if len(result.frames) == 1:
            write_bytes(out_dir / f"{stem}.mask.png", png_bytes(mask_png(key.mask)))
            files["mask"] = f"{stem}.mask.png"
        else:
            for i, frame in enumerate(result.frames):
                assert frame.mask is not None
                write_bytes(out_dir / f"{stem}.mask_f{i:04d}.png", png_bytes(mask_png(frame.mask)))
            files["mask"] = f"{stem}.mask_f*.png"
    picture = b""
    if report:
        picture = png_bytes(overlay(result.input.frames[result.key_frame], key.mask))
        write_bytes(out_dir / f"{stem}.overlay.png", picture)
        files["overlay"] = f"{stem}.overlay.png"
    files["json"] = f"{stem}.json"
    if report:
        files["html"] = f"{stem}.html"
    content = build_report(result, predictor, arguments, files)
    write_json(out_dir / files["json"], content)
    if report:
        write_bytes(out_dir / files["html"], render_report_html(content, picture).encode())
    return content


def predict_many(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path,
                 arguments: dict[str, Any] | None = None, progress: bool = True,
                 on_result: Callable[[dict[str, Any]], None] | None = None, overwrite: bool = False,
                 report: bool = True) -> BatchSummary:
    """Predict every input into ``out_dir``; a bad file is recorded as a failure and the run goes on.

    Raises DataError before any work when ``out_dir`` holds files this run would replace or inputs of this run,
    unless ``overwrite`` (see the module docstring).
    """
    out = Path(out_dir)
    check_writable(out)
    expanded = expand_inputs(inputs, out)
    check_output_folder(out, expanded, overwrite)
    failures: list[tuple[str, str]] = [(m, "file or folder not found") for m in expanded.missing]
    failures += expanded.unusable
    reports: list[dict[str, Any]] = []
    items: Iterable[tuple[Path, str]] = tqdm(expanded.files, desc="predicting", unit="image", disable=not progress)
    for file, stem in items:
        try:
            result = predictor.predict_one(file, evidence=report)
            content = write_result(result, predictor, out, stem, dict(arguments or {}), source=file, report=report)
        except DataError as err:
            if Path(err.item) == out or Path(err.item).parent == out:
                raise  # the output folder itself failed: every further image would fail the same way
            failures.append((display_name(file), err.reason))
            continue
        reports.append(content)
        if on_result is not None:
            on_result(content)
    csv_path = None
    if reports:
        csv_path = out / "predictions.csv"
        try:
            pd.DataFrame([csv_row(r) for r in reports]).to_csv(csv_path, index=False)
        except OSError as exc:
            raise DataError(csv_path, f"cannot write ({type(exc).__name__}: {exc})") from None
    if failures:
        pd.DataFrame(failures, columns=["file", "reason"]).to_csv(out / "failures.csv", index=False)
    return BatchSummary(reports, failures, csv_path, expanded.ignored, expanded.own_outputs)
