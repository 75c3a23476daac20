"""A folder of the user's own images: the adapter for data that is not one of the public datasets.

Layout (``root`` is the folder you pass)::

    root/
      images/<image_id>.png|.jpg|.jpeg|.tif|.tiff|.dcm   one file per image (grey or RGB; DICOM first frame)
      masks/<image_id>.png                               optional, per image; any non-zero pixel is nodule
      labels.csv                                         optional; one row per image

``labels.csv`` columns (header names are case-insensitive; extra columns are ignored):

    image_id        required; the file name stem in ``images/`` (a full file name is accepted too)
    patient_id      images of one patient share it, so that splits never put one patient on both sides
    tirads          optional; ACR (1-5, TR1-TR5) or DDTI (2, 3, 4a, 4b, 4c, 5) scale, see below
    composition, echogenicity, shape, margin, echogenic_foci (or calcifications)
                    optional ACR TI-RADS lexicon words, e.g. "solid", "very hypoechoic", "taller-than-wide",
                    "lobulated/irregular", "punctate"; case, spaces, hyphens and underscores do not matter.

An empty cell means unknown. Decisions, each reported in ``source.notes`` or ``source.skips``:

* TI-RADS scale: ``scale=`` wins when given; otherwise :func:`rlar.data.labels.detect_scale` reads the column:
  any 4a/4b/4c means DDTI, any TRk or 1 means ACR, and values 2-5 alone are ambiguous and read as ACR
  (the international standard) with a note asking the user to pass ``scale="ddti"`` if that is wrong.
* A TI-RADS value not on the scale, or a descriptor word outside the lexicon: the label is left unknown and a
  Skip names the image and the value (the image is still used, e.g. for segmentation). Never coerced.
* No ``labels.csv``: every image is its own patient and has unknown labels (a note says so).
* An image on disk but not in ``labels.csv``: kept with unknown labels and ``patient_id = image_id`` (a note
  lists them). It still helps segmentation; dropping a user's annotated image silently would be worse.
* A row in ``labels.csv`` with no image file: skipped with a reason. An empty ``patient_id``: the image is
  its own patient (a note counts these).
* Two image files with one stem (``a.png`` and ``a.jpg``): both skipped, since we cannot tell which is meant.
* Conflicting duplicate rows for one ``image_id``: the image is skipped; identical duplicates are merged.
* A mask whose size differs from its image: :class:`DataError` at load time naming both sizes.

* A root without ``images/``, or an ``images/`` without any image file: :class:`DataError` describing this
  layout (an unrelated folder is never read as an empty dataset).
* A problem that repeats for many items (one unknown descriptor word in 500 rows, a folder of .bmp files) is
  one Skip per distinct reason whose item lists the images (``"12 items (a, b, ...)"``), not 500 lines.
* DICOM images: their pixel spacing (:func:`rlar.data.io.declared_spacing`) is carried as
  ``SampleInfo.spacing_mm``.

Descriptor words are normalised by :func:`rlar.data.descriptors.normalise_descriptor` (shared with DDTI, so
DDTI spellings such as the calcification value ``non`` work here too). The user-facing description of this
format, with every accepted value, is docs/data-formats.md.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlar.data.descriptors import normalise_descriptor
from rlar.data.files import display_name, is_utf8_name, list_folder
from rlar.data.io import IMAGE_SUFFIXES, declared_spacing, read_image, read_mask
from rlar.data.labels import SCALE_LEVELS, canonical_level, detect_scale
from rlar.data.record import DESCRIPTORS, SampleInfo, listing
from rlar.data.sources.base import Source
from rlar.errors import ConfigError, DataError

# ---------------------------------------------------------------------------------------------------------
# The folder source
# ---------------------------------------------------------------------------------------------------------

_TIRADS_COLUMNS = ("tirads", "ti-rads", "ti_rads")
_MASK_SUFFIX = ".png"
_LAYOUT = (
    "expected <root>/images/<image_id>.png|.jpg|.jpeg|.tif|.tiff|.dcm, optionally <root>/masks/<image_id>.png and "
    "<root>/labels.csv (see docs/data-formats.md)"
)


def file_sample(
    source: Source,
    image_id: str,
    patient_id: str,
    tirads: str | None,
    descriptors: dict[str, str | None],
    image_path: Path,
    mask_path: Path | None,
) -> SampleInfo:
    """The record of one image file (and its mask file) of a file-per-image source, without decoding pixels.

    Shared by the file-based sources (folder, ThyroidXL) so that they agree on what ``location`` holds
    (image path, mask path) -- :func:`load_file_pair` reads it back -- and that DICOM spacing comes from the header.
    """
    return SampleInfo(
        image_id=image_id,
        patient_id=patient_id,
        source=source.name,
        tirads=tirads,
        scale=source.scale,
        descriptors=descriptors,
        has_mask=mask_path is not None,
        location=(image_path, mask_path),
        spacing_mm=declared_spacing(image_path),
    )


def load_file_pair(info: SampleInfo, threshold: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode the image and (when there is one) the mask of a :func:`file_sample` record; the mask must fit the image.

    ``threshold``: mask pixels above it are nodule (0 for binary masks; sources with anti-aliased masks set more).
    """
    image_path, mask_path = info.location
    image = read_image(image_path)
    mask = read_mask(mask_path, threshold=threshold, shape=image.shape) if mask_path is not None else None
    return image, mask


def _read_table(csv_path: Path) -> tuple[Any, list[tuple[int, str, int]]]:
    """labels.csv as a table of strings (lower-case column names), and its over-full rows (line, image_id, values).

    Parsed with the csv module rather than pandas: pandas reads a row with one value more than the header (a
    trailing comma, as spreadsheets write) by turning the first column into the index, which shifts every label
    one column to the left. Here empty trailing values are dropped, short rows are padded with empty cells, and a
    row with non-empty values beyond the header is reported (its labels cannot be matched to columns).
    """
    import pandas as pd

    try:
        text = csv_path.read_text(encoding="utf-8-sig")  # -sig: a BOM from a spreadsheet export is not a column
        lines = list(csv.reader(io.StringIO(text, newline=""), skipinitialspace=True))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(csv_path, f"cannot read label table ({exc.__class__.__name__}: {exc})") from exc
    if not lines:
        raise DataError(csv_path, "label table is empty (no header row)")
    header = [cell.strip().lower() for cell in lines[0]]
    while header and not header[-1]:
        header.pop()  # "image_id,tirads," names two columns
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(csv_path, f"column(s) {', '.join(repeated) or '(empty name)'} appear more than once in the "
                                  "header")
    width = len(header)
    id_column = header.index("image_id") if "image_id" in header else 0
    records: list[list[str]] = []
    overfull: list[tuple[int, str, int]] = []
    for line, row in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank line
        filled = len(row)
        while filled > width and not row[filled - 1].strip():
            filled -= 1  # trailing empty values: "a,P1,3," is the row "a,P1,3"
        if filled > width:
            overfull.append((line, row[id_column].strip() if id_column < len(row) else "", filled))
            continue
        records.append([*row[:width], *([""] * (width - len(row)))])
    return pd.DataFrame(records, columns=header, dtype=str), overfull


class FolderSource(Source):
    """Images (+ optional masks and labels.csv) in a plain folder. See the module docstring for the layout.

    Args:
        root: the folder holding ``images/``, optionally ``masks/`` and ``labels.csv``.
        scale: "acr" or "ddti" to state the TI-RADS scale of the ``tirads`` column; None detects it.
        labels_csv: file name (relative to root) or path of the label table.

    Attributes beyond :class:`Source`: ``notes`` (human-readable decisions taken while scanning, e.g. which
    TI-RADS scale was detected and why).
    """

    name = "folder"
    needs_root = True

    def __init__(
        self, root: str | Path | None, scale: str | None = None, labels_csv: str | Path = "labels.csv"
    ) -> None:
        if scale is not None and scale not in SCALE_LEVELS:
            raise ConfigError("data.options.scale", f"unknown TI-RADS scale '{scale}'; choose one of {', '.join(SCALE_LEVELS)}")
        self._requested_scale = scale
        self._labels_csv = Path(labels_csv)
        self.notes: list[str] = []
        self._grouped: dict[str, list[str]] = defaultdict(list)  # reason -> items, flushed into skips by reason
        super().__init__(root)

    # -- scanning ------------------------------------------------------------------------------------------
    def _scan(self) -> Iterator[SampleInfo]:
        if self.root is None or not self.root.is_dir():
            raise DataError(str(self.root), f"the folder source needs a folder as its root; {_LAYOUT}")
        image_dir = self.root / "images"
        if not image_dir.is_dir():
            raise DataError(self.root, f"not a folder dataset: no 'images/' folder in it; {_LAYOUT}")
        images = self._scan_images(image_dir)
        if not images:
            raise DataError(
                image_dir, f"not a folder dataset: no image file ({', '.join(IMAGE_SUFFIXES)}) in it; {_LAYOUT}"
            )
        masks = self._scan_masks(self.root / "masks", images)
        csv_path = self._labels_csv if self._labels_csv.is_absolute() else self.root / self._labels_csv
        rows = self._read_labels(csv_path, images) if csv_path.is_file() else None

        if rows is None:
            self.scale = self._requested_scale or "acr"
            self.notes.append(
                f"no {csv_path.name} found: every image is its own patient and all labels are unknown"
            )
            rows = {}
        has_csv = csv_path.is_file()
        not_in_csv: list[str] = []
        no_patient: list[str] = []
        for image_id, path in sorted(images.items()):
            row = rows.get(image_id)
            if row is None:
                if has_csv:
                    not_in_csv.append(image_id)
                row = {}
            patient_id = row.get("patient_id", "").strip()
            if not patient_id:
                if has_csv and row and "patient_id" in row:
                    no_patient.append(image_id)
                patient_id = image_id
            tirads = self._level(image_id, row.get("tirads", ""))
            descriptors = {name: self._descriptor(image_id, name, row.get(name, "")) for name in DESCRIPTORS}
            yield file_sample(self, image_id, patient_id, tirads, descriptors, path, masks.get(image_id))
        if not_in_csv:
            self.notes.append(
                f"{len(not_in_csv)} image(s) not in {csv_path.name}, kept with unknown labels and each as its own "
                f"patient: {listing(not_in_csv)}"
            )
        if no_patient:
            self.notes.append(
                f"{len(no_patient)} row(s) with an empty patient_id: each image is its own patient: "
                f"{listing(no_patient)}"
            )
        self._flush_grouped()

    def _group_skip(self, item: object, reason: str) -> None:
        """Record a skip whose reason may repeat for many items; they are reported once per reason."""
        self._grouped[reason].append(str(item))

    def _flush_grouped(self) -> None:
        for reason, items in self._grouped.items():
            item = items[0] if len(items) == 1 else f"{len(items)} items ({listing(items)})"
            self.skips.add(item, reason)
        self._grouped.clear()

    def _listed_files(self, folder: Path) -> list[Path]:
        """Regular files of ``folder``; dangling links, link loops, pipes and the like become counted skips.

        Hidden files (.DS_Store) and sub-folders are not data and are passed over, as before; file names that are
        not UTF-8 are kept (their ids show the odd bytes as ``\\xNN``, see :func:`rlar.data.files.display_name`)
        with a note.
        """
        try:
            found = list_folder(folder)
        except OSError as exc:
            raise DataError(folder, f"cannot list the folder ({exc.strerror or exc})") from None
        for path, reason in found.unusable:
            self._group_skip(display_name(path), reason)
        odd = [display_name(p.name) for p in found.files if not is_utf8_name(p.name)]
        if odd:
            self.notes.append(f"{len(odd)} file name(s) in {folder.name}/ are not valid UTF-8; their ids show the "
                              f"odd bytes as \\xNN: {listing(odd)}")
        return found.files

    def _scan_images(self, image_dir: Path) -> dict[str, Path]:
        """image_id -> file; ids claimed by several files (a.png + a.jpg) are skipped with a reason."""
        by_stem: dict[str, list[Path]] = defaultdict(list)
        for path in self._listed_files(image_dir):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                self._group_skip(display_name(path), f"unsupported image file type '{display_name(path.suffix)}' "
                                                     f"(use {', '.join(IMAGE_SUFFIXES)})")
                continue
            by_stem[display_name(path.stem)].append(path)
        images: dict[str, Path] = {}
        for stem, paths in by_stem.items():
            if len(paths) > 1:
                names = ", ".join(display_name(p.name) for p in paths)
                self.skips.add(stem, f"several image files share this image id ({names}); rename all but one")
                continue
            images[stem] = paths[0]
        return images

    def _scan_masks(self, mask_dir: Path, images: dict[str, Path]) -> dict[str, Path]:
        masks: dict[str, Path] = {}
        if not mask_dir.is_dir():
            self.notes.append("no 'masks/' folder: no image has a segmentation mask")
            return masks
        for path in self._listed_files(mask_dir):
            if path.suffix.lower() != _MASK_SUFFIX:
                self._group_skip(display_name(path), f"mask files must be lossless PNG named <image_id>{_MASK_SUFFIX}")
                continue
            stem = display_name(path.stem)
            if stem not in images:
                self._group_skip(display_name(path), "mask has no image with the same id in images/")
                continue
            masks[stem] = path
        return masks

    def _read_labels(self, csv_path: Path, images: dict[str, Path]) -> dict[str, dict[str, str]]:
        """Read labels.csv into image_id -> {column: raw text}; sets ``self.scale`` from its tirads column."""
        table, overfull = _read_table(csv_path)
        if "image_id" not in table.columns:
            raise DataError(csv_path, f"missing required column 'image_id' (found: {', '.join(table.columns)})")
        renames = {c: "tirads" for c in _TIRADS_COLUMNS if c in table.columns and c != "tirads"}
        if "tirads" not in table.columns and renames:
            table = table.rename(columns={next(iter(renames)): "tirads"})
        if "echogenic_foci" not in table.columns and "calcifications" in table.columns:
            table = table.rename(columns={"calcifications": "echogenic_foci"})
        elif "echogenic_foci" in table.columns and "calcifications" in table.columns:
            self.notes.append("both 'echogenic_foci' and 'calcifications' columns present: used echogenic_foci")
        if "patient_id" not in table.columns:
            self.notes.append(f"{csv_path.name} has no patient_id column: every image is its own patient")

        self._set_scale(list(table["tirads"]) if "tirads" in table.columns else [], csv_path.name)

        # Resolve ids: accept "a.png" for image a; group duplicate rows per id.
        stems_by_name = {path.name: stem for stem, path in images.items()}
        grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
        for record in table.to_dict(orient="records"):
            raw_id = str(record["image_id"]).strip()
            if not raw_id:
                self.skips.add(csv_path, "a row has an empty image_id")
                continue
            image_id = stems_by_name.get(raw_id, raw_id)
            grouped[image_id].append({k: str(v).strip() for k, v in record.items()})

        for line, raw_id, count in overfull:
            image_id = stems_by_name.get(raw_id, raw_id)
            grouped.pop(image_id, None)
            if images.pop(image_id, None) is not None:
                self.skips.add(image_id, f"line {line} of {csv_path.name} has {count} values for its "
                                         f"{len(table.columns)} columns (an unquoted comma?); its labels cannot be "
                                         "matched to columns, image not used until the row is fixed")
        rows: dict[str, dict[str, str]] = {}
        for image_id, records in grouped.items():
            if image_id not in images:
                self._group_skip(image_id, f"listed in {csv_path.name} but no image file for it in images/")
                continue
            distinct = {tuple(sorted((k, v) for k, v in r.items() if k != "image_id")) for r in records}
            if len(distinct) > 1:
                self.skips.add(image_id, f"{len(records)} conflicting rows in {csv_path.name}; keep one")
                images.pop(image_id)  # the image itself is unusable until the user says which row is right
                continue
            rows[image_id] = records[0]
        return rows

    def _set_scale(self, values: list[str], csv_name: str) -> None:
        present = [v.strip() for v in values if v.strip()]
        if self._requested_scale is not None:
            self.scale = self._requested_scale
            self.notes.append(f"tirads column read on the {self.scale} scale (set explicitly)")
            return
        if not present:
            self.scale = "acr"
            self.notes.append(f"no TI-RADS values in {csv_name}: scale defaults to acr, all labels unknown")
            return
        self.scale = detect_scale(present)
        lowered = sorted({v.lower() for v in present})
        ddti_marks = [v for v in lowered if re.fullmatch(r"4[abc]", v)]
        acr_marks = [v for v in lowered if v.startswith(("tr", "ti")) or re.fullmatch(r"1(\.0)?", v)]
        if self.scale == "ddti":
            self.notes.append(f"tirads column read on the ddti scale (found {'/'.join(ddti_marks)})")
            if acr_marks:
                self.notes.append(f"tirads column also holds ACR-style values ({', '.join(acr_marks)}): those are invalid")
        elif acr_marks:
            self.notes.append(f"tirads column read on the acr scale (found {', '.join(acr_marks)})")
        else:
            self.notes.append(
                "tirads column is ambiguous (only values 2-5, no 1/TRk/4a-4c): read on the acr scale; "
                "pass scale='ddti' if these are DDTI levels"
            )

    def _level(self, image_id: str, raw: str) -> str | None:
        assert self.scale is not None
        try:
            return canonical_level(raw, self.scale)
        except DataError as err:
            self._group_skip(image_id, f"tirads value '{raw}' is {err.reason}; label left unknown")
            return None

    def _descriptor(self, image_id: str, name: str, raw: str) -> str | None:
        try:
            return normalise_descriptor(name, raw)
        except DataError as err:
            self._group_skip(image_id, f"{name} value '{raw}': {err.reason}; left unknown")
            return None

    # -- loading -------------------------------------------------------------------------------------------
    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        image, mask = load_file_pair(info, threshold=0)
        return image, mask, {}
