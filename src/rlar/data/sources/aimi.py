"""Stanford AIMI "Thyroid Ultrasound Cine-clip" dataset: one HDF5 file of frames joined to a metadata table.

Layout (``root`` is the folder you pass)::

    root/
      dataset.hdf5    per-frame datasets, aligned by row:
                        image     (N, H, W) uint8 grey frames
                        mask      (N, H, W) uint8, 0 / 255 nodule mask (optional; without it, masks are None)
                        annot_id  (N,) bytes such as b"12_": the clip (one patient's nodule) the frame belongs to
                        frame_num (N,) frame index within the clip
      metadata.csv    one row per clip: annot_id, age, sex, location, size_x, size_y, size_z,
                        ti-rads_composition, ti-rads_echogenicity, ti-rads_shape, ti-rads_margin,
                        ti-rads_echogenicfoci, ti-rads_level, histopath_diagnosis

Identifiers: ``clip_id`` is ``annot_id`` without surrounding underscores/spaces (b"12_" -> "12"); the dataset
describes each annot_id as one patient's nodule clip, so ``patient_id = clip_id`` (two nodules of one patient,
if any, cannot be linked from the public files); ``frame = frame_num``; ``image_id = f"{clip_id}_{frame}"``.
Splits must therefore be made by clip (= patient here), never by frame: neighbouring frames are near-copies.

Memory: the real file is ~36 GB. Scanning reads only the ``annot_id`` and ``frame_num`` columns, in chunks;
pixels are read one frame at a time in ``__getitem__``. The HDF5 file is opened lazily, once per process, and
re-opened after a fork (the owning pid is stored), because HDF5 handles must not be shared across processes
(e.g. DataLoader workers); pickling drops the handle for the same reason.

Descriptors: the public ``metadata.csv`` has been seen with ACR *points* (0-3) in the ``ti-rads_*`` descriptor
columns, and documentation also describes ACR words; both are accepted. Words go through the shared lexicon
normaliser (case, hyphens, underscores ignored). Points are mapped back to the category when the ACR table makes
that unique; points shared by two categories (composition 0 = cystic or spongiform, echogenicity 1 = hyper- or
isoechoic, margin 0 = smooth or ill-defined, echogenic foci 0 = none or large comet-tail) are left unknown, and
so are foci values above 3 (sums of several categories), each with a Skip naming the clip and the value.
``ti-rads_level`` is the ACR level (1-5 / TR1-TR5). Other metadata columns are kept in ``source.clip_metadata``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlar.data.descriptors import normalise_descriptor
from rlar.data.labels import canonical_level
from rlar.data.record import DESCRIPTORS, SampleInfo, listing
from rlar.data.sources.base import Source
from rlar.errors import ConfigError, DataError

MASK_THRESHOLD = 127  # masks are stored 0/255

# metadata.csv column of each canonical descriptor.
DESCRIPTOR_COLUMNS: dict[str, str] = {
    "composition": "ti-rads_composition",
    "echogenicity": "ti-rads_echogenicity",
    "shape": "ti-rads_shape",
    "margin": "ti-rads_margin",
    "echogenic_foci": "ti-rads_echogenicfoci",
}
LEVEL_COLUMN = "ti-rads_level"

# ACR TI-RADS 2017 points -> category. A tuple of several categories means the points do not identify one.
ACR_POINTS: dict[str, dict[int, tuple[str, ...]]] = {
    "composition": {0: ("cystic", "spongiform"), 1: ("mixed",), 2: ("solid",)},
    "echogenicity": {0: ("anechoic",), 1: ("hyperechoic", "isoechoic"), 2: ("hypoechoic",), 3: ("very_hypoechoic",)},
    "shape": {0: ("wider_than_tall",), 3: ("taller_than_wide",)},
    "margin": {0: ("smooth", "ill_defined"), 2: ("lobulated_irregular",), 3: ("extrathyroidal_extension",)},
    "echogenic_foci": {0: ("none", "comet_tail"), 1: ("macrocalcifications",), 2: ("rim",), 3: ("punctate",)},
}


def clip_id_of(annot_id: object) -> str:
    """``b"12_"`` / ``"12_"`` -> ``"12"`` (the clip/patient identifier)."""
    text = annot_id.decode("utf-8", errors="replace") if isinstance(annot_id, bytes | np.bytes_) else str(annot_id)
    return text.strip().strip("_").strip()


def descriptor_from_metadata(name: str, value: object) -> str | None:
    """Canonical descriptor from one metadata cell holding either ACR points or an ACR word.

    Raises DataError (item = the raw value) when the value names no single category.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.0+)?", text):
        points = int(float(text))
        categories = ACR_POINTS[name].get(points)
        if categories is None:
            valid = ", ".join(str(p) for p in ACR_POINTS[name])
            extra = " (a sum of several foci categories?)" if name == "echogenic_foci" and points > 3 else ""
            raise DataError(text, f"{points} is not an ACR point value for {name} ({valid}){extra}")
        if len(categories) > 1:
            raise DataError(text, f"{points} ACR points for {name} is ambiguous ({' or '.join(categories)})")
        return categories[0]
    return normalise_descriptor(name, text)


def _natural_key(text: str) -> tuple[Any, ...]:
    """Sort "2" before "10" (clip ids are numbers in the public data, but stay strings)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


class AIMISource(Source):
    """Frames of the AIMI thyroid cine-clip dataset, read lazily from HDF5 (see the module docstring).

    Args:
        root: folder holding ``dataset.hdf5`` and ``metadata.csv``.
        frame_stride: keep every ``frame_stride``-th frame of each clip (in frame order, starting at the first):
            consecutive frames are near-duplicates, so a stride > 1 cuts cost with little information loss.
        hdf5_name, metadata_name: file names inside ``root``.
        chunk_rows: rows of ``annot_id``/``frame_num`` read at a time while scanning.

    Attributes beyond :class:`Source`: ``clip_metadata`` (clip_id -> the metadata row as a dict), ``notes``.
    """

    name = "aimi"
    needs_root = True
    scale = "acr"

    def __init__(
        self,
        root: str | Path,
        frame_stride: int = 1,
        hdf5_name: str = "dataset.hdf5",
        metadata_name: str = "metadata.csv",
        chunk_rows: int = 65536,
    ) -> None:
        if not isinstance(frame_stride, int) or isinstance(frame_stride, bool) or frame_stride < 1:
            raise ConfigError("data.options.frame_stride", f"must be a positive integer, got {frame_stride!r}")
        if chunk_rows < 1:
            raise ConfigError("data.options.chunk_rows", f"must be a positive integer, got {chunk_rows!r}")
        self.frame_stride = frame_stride
        self.chunk_rows = chunk_rows
        self.hdf5_path = Path(root) / hdf5_name
        self.metadata_path = Path(root) / metadata_name
        self.clip_metadata: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.has_masks = False
        self._h5: Any = None  # h5py.File, opened lazily per process
        self._h5_pid: int | None = None
        super().__init__(root)

    # -- scanning ------------------------------------------------------------------------------------------
    def _scan(self) -> Iterator[SampleInfo]:
        h5py = _h5py()
        if not self.hdf5_path.is_file():
            raise DataError(self.hdf5_path, "AIMI frame file not found")
        labels = self._read_metadata()

        rows_by_clip: dict[str, dict[int, int]] = {}  # clip -> frame -> hdf5 row
        try:
            with h5py.File(self.hdf5_path, "r") as f:
                for key in ("image", "annot_id", "frame_num"):
                    if key not in f:
                        raise DataError(self.hdf5_path, f"missing dataset '{key}' (found: {', '.join(f.keys())})")
                n = f["image"].shape[0]
                if f["image"].ndim != 3:
                    raise DataError(self.hdf5_path, f"'image' must be (N, H, W), got shape {f['image'].shape}")
                for key in ("annot_id", "frame_num") + (("mask",) if "mask" in f else ()):
                    if f[key].shape[0] != n:
                        raise DataError(self.hdf5_path, f"'{key}' has {f[key].shape[0]} rows but 'image' has {n}")
                if "mask" in f and f["mask"].shape != f["image"].shape:
                    raise DataError(self.hdf5_path, f"'mask' shape {f['mask'].shape} != 'image' shape {f['image'].shape}")
                self.has_masks = "mask" in f
                for start in range(0, n, self.chunk_rows):
                    stop = min(start + self.chunk_rows, n)
                    annot = f["annot_id"][start:stop]
                    frames = f["frame_num"][start:stop]
                    for offset, (raw_id, raw_frame) in enumerate(zip(annot, frames, strict=True)):
                        row = start + offset
                        clip, frame = clip_id_of(raw_id), int(raw_frame)
                        clip_rows = rows_by_clip.setdefault(clip, {})
                        if frame in clip_rows:
                            self.skips.add(f"{clip}_{frame}", f"duplicate frame (hdf5 rows {clip_rows[frame]} and {row})")
                            continue
                        clip_rows[frame] = row
        except OSError as exc:
            raise DataError(self.hdf5_path, f"cannot read HDF5 ({exc})") from exc
        if not self.has_masks:
            self.notes.append("dataset.hdf5 has no 'mask' dataset: frames have no masks")

        unlabelled = sorted((c for c in rows_by_clip if c not in labels), key=_natural_key)
        if unlabelled:
            self.notes.append(
                f"{len(unlabelled)} clip(s) have no metadata row: kept with unknown labels: {listing(unlabelled)}"
            )
        for clip in sorted(labels, key=_natural_key):
            if clip not in rows_by_clip:
                self.skips.add(clip, f"metadata row has no frames in {self.hdf5_path.name}")

        unknown = (None, dict.fromkeys(DESCRIPTORS))
        for clip in sorted(rows_by_clip, key=_natural_key):
            tirads, descriptors = labels.get(clip, unknown)
            frames = sorted(rows_by_clip[clip])
            for frame in frames[:: self.frame_stride]:
                yield SampleInfo(
                    image_id=f"{clip}_{frame}",
                    patient_id=clip,
                    source=self.name,
                    tirads=tirads,
                    scale=self.scale,
                    # One dict per clip, shared by its frames: cheap for ~10^5 frames. Treat as read-only.
                    descriptors=descriptors,
                    has_mask=self.has_masks,
                    clip_id=clip,
                    frame=frame,
                    location=rows_by_clip[clip][frame],
                )

    def _read_metadata(self) -> dict[str, tuple[str | None, dict[str, str | None]]]:
        """clip_id -> (TI-RADS level, descriptors); fills ``clip_metadata``. Missing file: all labels unknown."""
        import pandas as pd

        if not self.metadata_path.is_file():
            self.notes.append(f"{self.metadata_path.name} not found: all labels unknown")
            return {}
        try:
            table = pd.read_csv(self.metadata_path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise DataError(self.metadata_path, f"cannot read metadata ({exc.__class__.__name__}: {exc})") from exc
        table.columns = [str(c).strip().lower() for c in table.columns]
        if "annot_id" not in table.columns:
            raise DataError(self.metadata_path, f"missing column 'annot_id' (found: {', '.join(table.columns)})")
        missing = [c for c in (LEVEL_COLUMN, *DESCRIPTOR_COLUMNS.values()) if c not in table.columns]
        if missing:
            self.notes.append(f"{self.metadata_path.name} lacks column(s) {', '.join(missing)}: those labels unknown")

        labels: dict[str, tuple[str | None, dict[str, str | None]]] = {}
        for record in table.to_dict(orient="records"):
            clip = clip_id_of(record["annot_id"])
            if clip in labels:
                self.skips.add(clip, f"duplicate annot_id row in {self.metadata_path.name}; first row kept")
                continue
            raw_level = record.get(LEVEL_COLUMN, "")
            try:
                tirads = canonical_level(raw_level, "acr")
            except DataError as err:
                self.skips.add(clip, f"{LEVEL_COLUMN} value '{raw_level}' is {err.reason}; label left unknown")
                tirads = None
            descriptors: dict[str, str | None] = {}
            for name, column in DESCRIPTOR_COLUMNS.items():
                raw = record.get(column, "")
                try:
                    descriptors[name] = descriptor_from_metadata(name, raw)
                except DataError as err:
                    self.skips.add(clip, f"{column} value '{raw}': {err.reason}; left unknown")
                    descriptors[name] = None
            labels[clip] = (tirads, descriptors)
            self.clip_metadata[clip] = dict(record)
        return labels

    # -- loading -------------------------------------------------------------------------------------------
    def _file(self) -> Any:
        """The open HDF5 file of this process (opened on first use, re-opened in a forked child)."""
        pid = os.getpid()
        if self._h5 is None or self._h5_pid != pid:
            # In a forked child the parent's handle is unusable; drop the reference without closing it (closing
            # would act on state shared with the parent) and open our own.
            self._h5 = _h5py().File(self.hdf5_path, "r")
            self._h5_pid = pid
        return self._h5

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        row = int(info.location)
        try:
            f = self._file()
            frame = f["image"][row]
            mask_frame = f["mask"][row] if self.has_masks else None
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{self.hdf5_path}[{row}] ({info.image_id})", f"cannot read frame ({exc})") from exc
        if frame.ndim != 2:
            raise DataError(f"{self.hdf5_path}[{row}] ({info.image_id})", f"expected a 2D frame, got {frame.shape}")
        if frame.dtype != np.uint8:
            raise DataError(f"{self.hdf5_path}[{row}] ({info.image_id})", f"expected uint8 pixels, got {frame.dtype}")
        image = frame.astype(np.float32) / 255.0
        mask = mask_frame > MASK_THRESHOLD if mask_frame is not None else None
        return image, mask, {}

    def close(self) -> None:
        """Close this process's HDF5 handle (it is re-opened on the next access)."""
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5.close()
        self._h5, self._h5_pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        # HDF5 handles cannot be pickled (spawned DataLoader workers pickle the dataset): reopen on arrival.
        state = self.__dict__.copy()
        state["_h5"], state["_h5_pid"] = None, None
        return state


def _h5py() -> Any:
    # Imported on first use so that other sources do not pay for loading the HDF5 library.
    import h5py

    return h5py
