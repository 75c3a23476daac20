"""DICOM out for DICOM in: the predicted nodule as a DICOM Segmentation (highdicom), beside the PNG mask.

For a DICOM input, ``rlar predict`` writes ``<stem>.seg.dcm``: a binary Segmentation (one segment, "thyroid
nodule", SNOMED CT morphologically abnormal structure / nodule, algorithm type AUTOMATIC) whose frame is the
predicted mask at the input's resolution (still images: :mod:`.batch` gives clips a note instead), referencing the source image by its SOP
Instance UID and sharing its study (so 3D Slicer, OHIF or a PACS file it with the image). The algorithm is
identified as ``rlar`` with its version, and the series description names the model that answered. A source that
lacks study-level identifiers (test files, anonymised exports) gets generated UIDs and empty type-2 attributes on a
copy; the reference to the source instance is kept, and the caller is told.

Research use only: the series description says so.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

from rlar import __version__
from rlar.errors import DataError

#: Type-2 attributes highdicom copies from the source image (empty when the source has none).
_EMPTY_IF_MISSING = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
                     "StudyTime", "ReferringPhysicianName", "AccessionNumber")


def _completed_source(path: Path) -> tuple[Dataset, list[str]]:
    """The source dataset (pixels not decoded) with the study attributes highdicom needs, and notes."""
    import highdicom as hd
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises InvalidDicomError, OSError, ... depending on the damage
        raise DataError(path, f"cannot re-read the DICOM header for the Segmentation ({type(exc).__name__})") from None
    notes: list[str] = []
    missing = [a for a in ("StudyInstanceUID", "SeriesInstanceUID") if a not in ds]
    if missing or any(a not in ds for a in _EMPTY_IF_MISSING):
        ds = copy.deepcopy(ds)
        for attribute in missing:
            setattr(ds, attribute, hd.UID())
        for attribute in _EMPTY_IF_MISSING:
            if attribute not in ds:
                setattr(ds, attribute, None)
    if missing:
        notes.append(f"the DICOM input has no {' / '.join(missing)}: the Segmentation got generated ones (it still "
                     "references the image's SOP Instance UID)")
    return ds, notes


def write_segmentation(source: str | Path, masks: Sequence[np.ndarray], out: str | Path, model: str) -> list[str]:
    """Write the DICOM Segmentation of ``masks`` (one bool (H, W) per source frame) to ``out``; returns notes.

    Raises DataError naming the file when the source cannot be re-read or the file cannot be written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = Path(source)
    ds, notes = _completed_source(source)
    frames = np.stack([np.asarray(m, dtype=bool) for m in masks])
    rows, cols = int(ds.get("Rows", frames.shape[1])), int(ds.get("Columns", frames.shape[2]))
    if frames.shape[1:] != (rows, cols):
        raise DataError(source, f"mask size {frames.shape[1:]} differs from the image's {rows}x{cols}")
    algorithm = hd.AlgorithmIdentificationSequence(name="rlar", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="thyroid nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
    )
    pixel_array = frames[0] if len(frames) == 1 else frames
    try:
        seg = hd.seg.Segmentation(
            source_images=[ds], pixel_array=pixel_array, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=900,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="rlar",
            manufacturer_model_name=model[:64], software_versions=__version__, device_serial_number="none",
            series_description="rlar nodule segmentation (research use only)"[:64],
            omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise DataError(source, f"cannot build a DICOM Segmentation for this image ({err})") from None
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        seg.save_as(tmp, enforce_file_format=True)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(out, f"cannot write output ({type(exc).__name__}: {exc.strerror or exc})") from None
    return notes


__all__ = ["write_segmentation"]
