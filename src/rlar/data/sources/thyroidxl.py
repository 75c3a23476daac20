"""ThyroidXL: still ultrasound images with nodule masks, an official train/test split and per-patient info.

Layout (``root`` is the folder you pass)::

    root/
      train/images/<file>      test/images/<file>       PNG/JPEG/TIFF/DICOM ultrasound images
      train/masks/<file>       test/masks/<file>        the same file name (or <stem>.png); pixel > 127 = nodule
      <anything>.json                                   patient info (or pass ``info_json=``)

Patient info JSON: either a dict keyed by patient id, a list of patient dicts carrying an id field
(``patient_id``, ``id`` or ``patient``; case-insensitive), or either of those wrapped as ``{"patients": ...}``.
Each patient dict holds::

    {"images": ["0001.png", "0002.png"],          # file names (any directory part is ignored)
     "nodule_1": {"TIRADS": 4, ...},              # ACR level: 1-5 or "TR1".."TR5"
     ...}                                         # other keys are ignored

e.g. ``{"P001": {"images": ["0001.png"], "nodule_1": {"TIRADS": "TR4"}}}`` or
``[{"patient_id": "P001", "images": ["0001.png"], "nodule_1": {"TIRADS": 4}}]``.
If ``nodule_1`` also carries ACR descriptors (``composition``, ``echogenicity``, ``shape``, ``margin``,
``echogenic_foci``/``calcifications``; keys case-insensitive) they are read with the shared lexicon
normaliser; otherwise descriptors are unknown. The image-level label is the patient's ``nodule_1`` TI-RADS:
the info does not say which nodule each image shows, and a note counts patients whose other nodules carry a
different level.

Decisions (reported in ``source.notes`` / ``source.skips``):

* The official split is kept: ``source.official_split[image_id]`` is "train" or "test"; ``split=`` restricts
  the source to one of them.
* An image with no patient entry is kept (it still serves segmentation) with ``patient_id`` = its stem and an
  unknown label, and listed in a note rather than a Skip: nothing is dropped, but the user should know that
  patient grouping, and so leakage-free splitting, is not guaranteed for it.
* An image named by two patients, or two image files with one stem: skipped with the reason.
* A file the JSON lists that is in neither split folder: a Skip ("listed ... but not found").
* A TI-RADS value that is not an ACR level: label unknown and a Skip naming patient and value.
* A missing mask: ``mask`` is None (``has_mask`` False).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlar.data.descriptors import normalise_descriptor
from rlar.data.files import display_name, list_folder
from rlar.data.io import IMAGE_SUFFIXES
from rlar.data.labels import canonical_level
from rlar.data.record import DESCRIPTORS, SampleInfo, listing
from rlar.data.sources.base import Source
from rlar.data.sources.folder import file_sample, load_file_pair
from rlar.errors import ConfigError, DataError

SPLITS: tuple[str, ...] = ("train", "test")
MASK_THRESHOLD = 127  # masks are 8-bit 0/255; > 127 tolerates resampling/JPEG noise at the border
_ID_KEYS = ("patient_id", "patientid", "id", "patient")
_TIRADS_KEYS = ("tirads", "ti-rads", "ti_rads")
_DESCRIPTOR_KEYS = {name: (name,) for name in DESCRIPTORS} | {"echogenic_foci": ("echogenic_foci", "calcifications")}


def _get(entry: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """Case-insensitive lookup of the first present key."""
    lowered = {str(k).lower(): v for k, v in entry.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


class ThyroidXLSource(Source):
    """ThyroidXL images with masks, ACR TI-RADS per patient, and the official split (see module docstring).

    Args:
        root: dataset folder holding ``train/`` and/or ``test/``.
        split: None for both official splits, or "train"/"test" for one.
        info_json: the patient info file (absolute, or relative to root); None finds the single ``*.json``
            at the root (a file named like ``*patient*``/``*info*`` wins when there are several).

    Attributes beyond :class:`Source`: ``official_split`` (image_id -> "train"/"test"), ``notes``.
    """

    name = "thyroidxl"
    needs_root = True
    scale = "acr"

    def __init__(self, root: str | Path, split: str | None = None, info_json: str | Path | None = None) -> None:
        if split is not None and split not in SPLITS:
            raise ConfigError("data.options.split", f"unknown ThyroidXL split '{split}'; choose one of {', '.join(SPLITS)} or None")
        self.split = split
        self._info_json = Path(info_json) if info_json is not None else None
        self.official_split: dict[str, str] = {}
        self.notes: list[str] = []
        super().__init__(root)

    # -- scanning ------------------------------------------------------------------------------------------
    def _scan(self) -> Iterator[SampleInfo]:
        assert self.root is not None
        present = [s for s in SPLITS if (self.root / s / "images").is_dir()]
        if not present:
            raise DataError(self.root, "no ThyroidXL split folder found (expected train/images/ and/or test/images/)")
        if self.split is not None and self.split not in present:
            raise DataError(self.root / self.split / "images", f"requested split '{self.split}' has no images folder")

        # Files of every split present on disk, so that "listed in the JSON but missing" is judged fairly
        # even when only one split is requested.
        files: dict[str, tuple[str, Path]] = {}  # file name -> (split, path)
        by_stem: dict[str, list[tuple[str, Path]]] = {}
        for split in present:
            try:
                found = list_folder(self.root / split / "images")
            except OSError as exc:
                raise DataError(self.root / split / "images", f"cannot list the folder ({exc.strerror or exc})") from None
            for entry, reason in found.unusable:  # dangling links, loops, pipes: counted, never silently lost
                self.skips.add(display_name(entry), reason)
            for path in found.files:
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    self.skips.add(path, f"unsupported image file type '{path.suffix}'")
                    continue
                files[path.name] = (split, path)
                by_stem.setdefault(path.stem, []).append((split, path))

        # file name -> (patient_id, tirads, descriptors); `unusable`: files named under several patients.
        patients, unusable = self._read_patients(files)

        no_info: list[str] = []
        for stem, entries in sorted(by_stem.items()):
            if len(entries) > 1:
                where = ", ".join(f"{s}/images/{p.name}" for s, p in entries)
                self.skips.add(stem, f"several image files share this image id ({where})")
                continue
            split, path = entries[0]
            if path.name in unusable or (self.split is not None and split != self.split):
                continue
            patient = patients.get(path.name)
            if patient is None:
                no_info.append(path.name)
                patient_id, tirads, descriptors = stem, None, dict.fromkeys(DESCRIPTORS)
            else:
                patient_id, tirads, descriptors = patient
            self.official_split[stem] = split
            yield file_sample(self, stem, patient_id, tirads, descriptors, path, self._find_mask(split, path))
        if no_info:
            self.notes.append(
                f"{len(no_info)} image(s) have no patient entry: kept with unknown TI-RADS, each its own patient "
                f"(patient-level splitting cannot be guaranteed for them): {listing(no_info)}"
            )

    def _find_mask(self, split: str, image_path: Path) -> Path | None:
        assert self.root is not None
        mask_dir = self.root / split / "masks"
        for candidate in (mask_dir / image_path.name, mask_dir / f"{image_path.stem}.png"):
            if candidate.is_file():
                return candidate
        return None

    def _locate_info_json(self) -> Path | None:
        assert self.root is not None
        if self._info_json is not None:
            path = self._info_json if self._info_json.is_absolute() else self.root / self._info_json
            if not path.is_file():
                raise DataError(path, "patient info JSON given by info_json= does not exist")
            return path
        candidates = sorted(self.root.glob("*.json"))
        if len(candidates) > 1:
            preferred = [p for p in candidates if "patient" in p.name.lower() or "info" in p.name.lower()]
            if len(preferred) != 1:
                names = ", ".join(p.name for p in candidates)
                raise DataError(self.root, f"several JSON files at the root ({names}); pass info_json= to choose")
            candidates = preferred
        return candidates[0] if candidates else None

    def _read_patients(
        self, files: dict[str, tuple[str, Path]]
    ) -> tuple[dict[str, tuple[str, str | None, dict]], set[str]]:
        """Parse the patient info JSON into (file name -> (patient_id, tirads, descriptors), unusable files)."""
        path = self._locate_info_json()
        if path is None:
            self.notes.append("no patient info JSON at the root: every image is its own patient, labels unknown")
            return {}, set()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(path, f"cannot read patient info JSON ({exc.__class__.__name__}: {exc})") from exc
        if isinstance(data, dict) and set(data) == {"patients"}:
            data = data["patients"]
        entries: list[tuple[str, Any]]
        if isinstance(data, dict):
            entries = [(str(k), v) for k, v in data.items()]
        elif isinstance(data, list):
            entries = []
            for k, entry in enumerate(data):
                pid = _get(entry, _ID_KEYS) if isinstance(entry, dict) else None
                if pid is None or str(pid).strip() == "":
                    self.skips.add(f"{path.name}[{k}]", f"patient entry has no id field ({', '.join(_ID_KEYS)})")
                    continue
                entries.append((str(pid).strip(), entry))
        else:
            raise DataError(path, f"patient info must be a dict keyed by patient id or a list, got {type(data).__name__}")

        owner: dict[str, tuple[str, str | None, dict]] = {}
        claimed_twice: set[str] = set()
        differing_nodules: list[str] = []
        for patient_id, entry in entries:
            if not isinstance(entry, dict):
                self.skips.add(patient_id, f"patient entry is a {type(entry).__name__}, expected an object")
                continue
            images = _get(entry, ("images",))
            if not isinstance(images, list):
                self.skips.add(patient_id, "patient entry has no 'images' list")
                continue
            tirads, descriptors = self._labels(patient_id, entry, differing_nodules)
            for name in images:
                file_name = Path(str(name)).name
                if file_name in owner and owner[file_name][0] != patient_id:
                    claimed_twice.add(file_name)
                owner[file_name] = (patient_id, tirads, descriptors)
                if file_name not in files:
                    self.skips.add(file_name, f"listed for patient {patient_id} in {path.name} but not found in any split")
        for file_name in sorted(claimed_twice):
            # The image's patient, hence its split side and label, is unknown: unusable.
            self.skips.add(file_name, f"listed under several patients in {path.name}")
            owner.pop(file_name)
        if differing_nodules:
            self.notes.append(
                f"{len(differing_nodules)} patient(s) have nodules with different TI-RADS levels; images take "
                f"nodule_1's level: {listing(differing_nodules)}"
            )
        return owner, claimed_twice

    def _labels(self, patient_id: str, entry: dict[str, Any], differing: list[str]) -> tuple[str | None, dict]:
        nodule = _get(entry, ("nodule_1",))
        nodule = nodule if isinstance(nodule, dict) else {}
        raw = _get(nodule, _TIRADS_KEYS)
        try:
            tirads = canonical_level(raw, self.scale or "acr")
        except DataError as err:
            self.skips.add(patient_id, f"nodule_1 TIRADS value '{raw}' is {err.reason}; label left unknown")
            tirads = None
        descriptors: dict[str, str | None] = {}
        for name, keys in _DESCRIPTOR_KEYS.items():
            value = _get(nodule, keys)
            try:
                descriptors[name] = normalise_descriptor(name, value)
            except DataError as err:
                self.skips.add(patient_id, f"nodule_1 {name} value '{value}': {err.reason}; left unknown")
                descriptors[name] = None
        others = {
            _level_or_none(_get(v, _TIRADS_KEYS), self.scale or "acr")
            for k, v in entry.items()
            if str(k).lower().startswith("nodule_") and str(k).lower() != "nodule_1" and isinstance(v, dict)
        }
        if others - {None, tirads}:
            differing.append(patient_id)
        return tirads, descriptors

    # -- loading -------------------------------------------------------------------------------------------
    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        image, mask = load_file_pair(info, threshold=MASK_THRESHOLD)
        return image, mask, {"official_split": self.official_split.get(info.image_id)}


def _level_or_none(value: object, scale: str) -> str | None:
    """canonical_level that maps invalid values to None (used only to compare nodules, never as a label)."""
    try:
        return canonical_level(value, scale)
    except DataError:
        return None
