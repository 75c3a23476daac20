"""The part every test DICOM shares: a minimal Part-10 ultrasound dataset, pixel attributes left to the caller.

Tests import it as ``tests._dicom_base`` (``tests/`` is a package; pytest puts the repository root on ``sys.path``).
"""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid


def ultrasound_dataset() -> Dataset:
    """File meta (explicit VR little endian), SOP class and instance UIDs and modality "US"."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    return ds
