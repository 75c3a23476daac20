"""Peak memory of ``rlar data summary folder`` on a folder holding one huge image (issue 11, item 2).

Writes ``<dir>/images/huge.dcm``: an RLE-compressed DICOM (3 MB on disk) whose header declares 14000 x 14000
8-bit pixels, i.e. 196 megapixels that would cost gigabytes to decode (pydicom's uint8 array, then float work
arrays). Then runs ``rlar data summary folder --root <dir>`` (with its default verification, which decodes
every image) in a child process and reports the child's peak resident memory (``ru_maxrss`` of
``RUSAGE_CHILDREN``, Linux) and its exit code. With the header check the image is refused before decoding,
listed among the skips with its reason, and the peak stays that of the Python process itself.

    python benchmarks/decode_memory.py                       # 14000 x 14000, limit 500 MB
    python benchmarks/decode_memory.py --side 6000 --format png --limit-mb 1500   # an accepted image instead

Also with ``--format png``: a 16-bit PNG of the given side (accepted when under the pixel cap), to measure the
bytes per pixel of a real decode. Exits 1 when the peak exceeds ``--limit-mb``.
"""

from __future__ import annotations

import argparse
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RLE_MAX_RUN = 128  # one RLE "replicate" packet repeats a byte at most 128 times (PS3.5 G.3.1)


def rle_zero_frame(n_bytes: int) -> bytes:
    """One RLE Lossless frame (one segment) that decodes to ``n_bytes`` zero bytes, built without an encoder.

    Header: 16 little-endian uint32 (segment count, then offsets; the first segment starts at byte 64).
    Packets: (-127 as a signed byte, 0) repeats 0 128 times; a final shorter run covers the remainder.
    """
    full, rest = divmod(n_bytes, RLE_MAX_RUN)
    body = np.tile(np.array([0x81, 0x00], dtype=np.uint8), full).tobytes()
    if rest:
        body += bytes([(257 - rest) & 0xFF, 0x00])
    if len(body) % 2:
        body += b"\x00"
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    return header + body


def write_rle_dicom(path: Path, rows: int, cols: int) -> Path:
    """An 8-bit MONOCHROME2 ultrasound DICOM, RLE Lossless, all pixels 0, declaring rows x cols."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless, UltrasoundImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = RLELossless
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([rle_zero_frame(rows * cols)])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png16(path: Path, side: int) -> Path:
    """A 16-bit grey PNG of side x side with a full-range ramp (no bit-depth warning)."""
    from PIL import Image

    ramp = (np.arange(side, dtype=np.uint32) * 65535 // max(side - 1, 1)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(ramp, (side, 1))).save(path)
    return path


def summary_peak_mb(root: Path, extra: list[str] | None = None) -> tuple[float, int, str]:
    """Run ``rlar data summary folder --root root`` in a child; (peak RSS in MB, exit code, combined output)."""
    cmd = [sys.executable, "-m", "rlar.cli.main", "data", "summary", "folder", "--root", str(root), *(extra or [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # ru_maxrss of RUSAGE_CHILDREN is the largest peak among waited-for children (KB on Linux): this process
    # starts no other child, so it is the peak of the CLI run.
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak_kb / 1024.0, done.returncode, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=14000, help="image side in pixels (default 14000)")
    parser.add_argument("--format", choices=("dicom", "png"), default="dicom")
    parser.add_argument("--limit-mb", type=float, default=500.0, help="fail above this peak (default 500)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        if args.format == "dicom":
            image = write_rle_dicom(root / "images" / "huge.dcm", args.side, args.side)
        else:
            image = write_png16(root / "images" / "huge.png", args.side)
        made = time.perf_counter() - start
        print(f"{image.name}: {args.side}x{args.side}, {image.stat().st_size / 1e6:.1f} MB on disk ({made:.1f} s to write)")
        peak, code, output = summary_peak_mb(root)
    lines = [line for line in output.splitlines() if "huge" in line or "images:" in line]
    print("\n".join(lines[:4]))
    print(f"rlar data summary exit code {code}; peak resident memory of the child: {peak:.0f} MB (limit {args.limit_mb:.0f})")
    return 0 if peak <= args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
