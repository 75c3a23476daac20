"""Checks on an uploaded file, in the order that keeps a hostile upload cheap: size, content type by magic bytes
(never the file name or the client's Content-Type), then the pixel count its header declares -- all before any
pixel is decoded. The file name is used for display only (escaped), never as a path.
"""

from __future__ import annotations

import re

from rlar.data.io import TooManyPixels, declared_values, sniff_format
from rlar.errors import DataError
from rlar.serving.limits import ServerLimits

_DISPLAY = re.compile(r"[^\w .()+-]+")


class UploadRejected(Exception):
    """An upload refused with an HTTP status (413 too large, 415 unsupported type, 400 malformed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def display_name(filename: str | None) -> str:
    """A harmless label for the upload: the last path component, odd characters replaced, at most 80 characters."""
    base = (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return (_DISPLAY.sub("_", base).strip() or "upload")[:80]


def check_upload(data: bytes, limits: ServerLimits, name: str = "upload") -> str:
    """Validate upload bytes; returns the recognised format or raises :class:`UploadRejected`."""
    if not data:
        raise UploadRejected(400, "the uploaded file is empty")
    if len(data) > limits.max_upload_bytes:
        raise UploadRejected(413, f"the file is larger than the limit of {limits.max_upload_bytes // (1024 * 1024)} MB")
    kind = sniff_format(data[:132])
    if kind is None:
        raise UploadRejected(415, "not a PNG, JPEG, TIFF or DICOM image (checked by content, not by name)")
    try:
        # Every frame counted by its own header (a TIFF's second page, an MPO's second picture): the count the
        # decoder checks again with the same cap.
        pixels = declared_values(data, name)
    except TooManyPixels as err:
        raise UploadRejected(413, err.reason) from None
    except DataError as err:
        raise UploadRejected(400, err.reason) from None
    if pixels <= 0:
        raise UploadRejected(400, "the image header declares no pixels")
    if pixels > limits.max_pixels:
        raise UploadRejected(413, f"the image declares {pixels:,} pixel values (width x height x colour samples x "
                                  f"frames), more than the limit of "
                                  f"{limits.max_pixels:,} (refused before decoding)")
    return kind
