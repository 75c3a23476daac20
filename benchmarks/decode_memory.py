"""Peak memory of decoding hostile image files: every frame of every format is bounded before decoding.

Issue 11, item 2 (one huge image) and issue 23, item 1 (multi-frame images whose *later* frames are huge). Each
case writes one file that is small on disk but declares (or expands to) far more pixels than the cap, then
decodes it in a child process and reports the child's peak resident memory (``ru_maxrss`` from ``os.wait4``,
Linux) and how the decode ended:

=================  ==================================================================================  =========
case               file                                                                                decoder
=================  ==================================================================================  =========
dicom              RLE DICOM declaring 14000 x 14000 8-bit pixels (3 MB)                               summary
tiff-pages         TIFF: a 16x16 page, then a 12000x12000 deflate page (~140 KB)                       frames
mpo                MPO JPEG: a 16x16 picture, then a 12000x12000 picture (~1 MB)                       frames
apng               APNG: 40 frames of a 2000x2000 canvas (160 M 8-bit pixels; ~0.8 MB)                  frames
dicom-jpeg         JPEG-baseline DICOM, Rows x Columns 16 x 16, its codestream 12000x12000 (~1 MB)      frames
dicom-rle-expand   RLE DICOM, Rows x Columns 16 x 16, its segment expanding to 150 MB (~2.3 MB)         frames
png                a 16-bit PNG of ``--side`` (an accepted image: bytes per pixel of a real decode)    summary
=================  ==================================================================================  =========

"summary" runs ``rlar data summary folder --root <dir>`` (training's decoder: the first frame of each file,
every file verified); "frames" runs :func:`rlar.data.io.read_frames` with ``all_frames=True``, the decoder that
``rlar predict`` and ``rlar serve`` call for every input (through :func:`rlar.inference.images.read_input`),
with the package's default cap (:data:`rlar.data.io.MAX_PIXELS`, 40 M values) or ``--max-megapixels``.

    python benchmarks/decode_memory.py                          # the DICOM case, limit 500 MB (issue 11)
    python benchmarks/decode_memory.py --case all --limit-mb 500    # every hostile file, one line each
    python benchmarks/decode_memory.py --case png --side 6000 --limit-mb 1500   # an accepted image instead
    python benchmarks/decode_memory.py --case all --src /tmp/old/src   # decode with another checkout's rlar

``--src`` puts another source tree first on the child's ``PYTHONPATH`` (e.g. ``git archive HEAD~1 src | tar -x
-C /tmp/old``) to measure the code before a fix; ``--child-limit-mb`` (default 6000) caps the child's address
space so such a run fails with MemoryError instead of exhausting the machine. Exits 1 when a peak exceeds
``--limit-mb``.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

RLE_MAX_RUN = 128  # one RLE "replicate" packet repeats a byte at most 128 times (PS3.5 G.3.1)
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ file builders
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


def _dicom_dataset(rows: int, cols: int, syntax: str, frames: int = 1):
    """An 8-bit MONOCHROME2 ultrasound dataset of ``rows`` x ``cols`` (x ``frames``) with transfer ``syntax``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UltrasoundImageStorage, UltrasoundMultiFrameImageStorage, generate_uid

    sop = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def _save_encapsulated(ds, path: Path, frames: list[bytes]) -> Path:
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rle_dicom(path: Path, rows: int, cols: int, decoded_bytes: int | None = None) -> Path:
    """An 8-bit RLE Lossless DICOM declaring ``rows`` x ``cols``, all pixels 0.

    ``decoded_bytes``: what its one segment really expands to (default ``rows * cols``); more than that is the
    bomb pydicom's decoder meets only after expanding it.
    """
    from pydicom.uid import RLELossless

    ds = _dicom_dataset(rows, cols, RLELossless)
    return _save_encapsulated(ds, path, [rle_zero_frame(decoded_bytes or rows * cols)])


def jpeg_bytes(width: int, height: int, value: int = 0, quality: int = 50) -> bytes:
    """A valid grey baseline JPEG of ``width`` x ``height`` (Pillow needs width x height bytes while encoding)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), value).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def patched_jpeg_bytes(width: int, height: int) -> bytes:
    """A 16x16 grey JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``.

    Its scan data is that of 16x16 pixels, so a decoder would allocate the declared size and then find the data
    short; a check of the header alone refuses it. Tiny whatever the size: for tests.
    """
    data = bytearray(jpeg_bytes(16, 16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def write_jpeg_dicom(path: Path, rows: int, cols: int, codestreams: list[bytes]) -> Path:
    """A JPEG-baseline DICOM of ``rows`` x ``cols`` x len(codestreams) frames holding the given codestreams."""
    from pydicom.uid import JPEGBaseline8Bit

    ds = _dicom_dataset(rows, cols, JPEGBaseline8Bit, frames=len(codestreams))
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.LossyImageCompression = "01"
    return _save_encapsulated(ds, path, codestreams)


def _tiff_ifd(entries: list[tuple[int, int, int, int]], next_ifd: int) -> bytes:
    """One little-endian IFD: (tag, type, count, value) entries (types 3 SHORT / 4 LONG, one value each)."""
    out = struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    return out + struct.pack("<I", next_ifd)


def write_tiff_pages(path: Path, pages: list[tuple[int, int]], chunk: int = 1 << 20) -> Path:
    """A multi-page grey 8-bit TIFF, each (width, height) page all zeros in one deflate strip, written by hand.

    The zeros are compressed as a stream (``chunk`` bytes at a time), so a 12000x12000 page costs ~140 KB on disk
    and no 144 MB buffer here.
    """
    strips: list[bytes] = []
    for width, height in pages:
        packer = zlib.compressobj(9)
        total, parts = width * height, []
        zeros = bytes(min(chunk, total))
        while total > 0:
            parts.append(packer.compress(zeros[: min(chunk, total)]))
            total -= chunk
        parts.append(packer.flush())
        strips.append(b"".join(parts))
    out = bytearray(b"II*\x00" + struct.pack("<I", 0))  # IFD0 offset patched below
    ifd_size = 2 + 9 * 12 + 4
    offsets = []
    for strip in strips:
        offsets.append(len(out))
        out += strip + (b"\x00" if len(strip) % 2 else b"")
    first_ifd = len(out)
    struct.pack_into("<I", out, 4, first_ifd)
    for index, ((width, height), strip) in enumerate(zip(pages, strips)):
        here = first_ifd + index * ifd_size
        nxt = here + ifd_size if index + 1 < len(pages) else 0
        out += _tiff_ifd([(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8),
                          (262, 3, 1, 1), (273, 4, 1, offsets[index]), (277, 3, 1, 1), (278, 4, 1, height),
                          (279, 4, 1, len(strip))], nxt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def write_mpo(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """An MPO (multi-picture JPEG) of grey pictures of the given (width, height) (Pillow's MPO writer)."""
    from PIL import Image

    pictures = [Image.new("L", size, 0) for size in sizes]
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, format="MPO", save_all=True, append_images=pictures[1:], quality=50)
    return path


def write_apng(path: Path, side: int, frames: int) -> Path:
    """An APNG of ``frames`` grey frames of ``side`` x ``side`` (alternating 0 and 1, so none is merged)."""
    from PIL import Image

    pair = [Image.new("L", (side, side), 0), Image.new("L", (side, side), 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pair[0].save(path, format="PNG", save_all=True, append_images=[pair[(k + 1) % 2] for k in range(frames - 1)],
                 compress_level=1)
    return path


def write_png16(path: Path, side: int) -> Path:
    """A 16-bit grey PNG of side x side with a full-range ramp (no bit-depth warning)."""
    from PIL import Image

    ramp = (np.arange(side, dtype=np.uint32) * 65535 // max(side - 1, 1)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(ramp, (side, 1))).save(path)
    return path


# ------------------------------------------------------------------------------------------ measuring
def child_peak(cmd: list[str], src: Path | None = None, limit_mb: float | None = None) -> tuple[float, int, str]:
    """Run ``cmd`` in a child; (its own peak RSS in MB from wait4, exit code, combined output)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    def cap() -> None:
        if limit_mb is not None:
            size = int(limit_mb * 1024 * 1024)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=cap)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    return usage.ru_maxrss / 1024.0, child.returncode, output  # ru_maxrss is in KB on Linux


def summary_peak_mb(root: Path, extra: list[str] | None = None, src: Path | None = None,
                    limit_mb: float | None = None) -> tuple[float, int, str]:
    """Run ``rlar data summary folder --root root`` in a child; (peak RSS in MB, exit code, combined output)."""
    cmd = [sys.executable, "-m", "rlar.cli.main", "data", "summary", "folder", "--root", str(root), *(extra or [])]
    return child_peak(cmd, src, limit_mb)


_FRAMES_SCRIPT = """
import sys
from rlar.data.io import read_frames
from rlar.errors import DataError
try:
    decoded = read_frames(sys.argv[1], max_pixels=int(sys.argv[2]))
except DataError as err:
    print("refused:", err.reason)
except MemoryError:
    print("MemoryError")
else:
    print("decoded", len(decoded.frames), "frame(s):", ", ".join(f"{f.shape[1]}x{f.shape[0]}" for f in decoded.frames))
"""


def frames_peak_mb(path: Path, max_pixels: int, src: Path | None = None,
                   limit_mb: float | None = None) -> tuple[float, int, str]:
    """Decode ``path`` with read_frames (every frame; predict's and serve's decoder) in a child."""
    return child_peak([sys.executable, "-c", _FRAMES_SCRIPT, str(path), str(max_pixels)], src, limit_mb)


def _cases(side: int) -> dict[str, tuple[str, Callable[[Path], Path]]]:
    """case -> (decoder, builder of the file in a folder)."""
    return {
        "dicom": ("summary", lambda d: write_rle_dicom(d / "images" / "huge.dcm", 14000, 14000)),
        "tiff-pages": ("frames", lambda d: write_tiff_pages(d / "pages.tif", [(16, 16), (12000, 12000)])),
        "mpo": ("frames", lambda d: write_mpo(d / "pictures.mpo", [(16, 16), (12000, 12000)])),
        "apng": ("frames", lambda d: write_apng(d / "clip.png", 2000, 40)),
        "dicom-jpeg": ("frames", lambda d: write_jpeg_dicom(d / "jpeg.dcm", 16, 16, [jpeg_bytes(12000, 12000)])),
        "dicom-rle-expand": ("frames", lambda d: write_rle_dicom(d / "expand.dcm", 16, 16, 150_000_000)),
        "png": ("summary", lambda d: write_png16(d / "images" / "huge.png", side)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cases = _cases(0)
    parser.add_argument("--case", choices=(*cases, "all"), default="dicom",
                        help="which file to decode; 'all' runs every hostile case (not png)")
    parser.add_argument("--format", choices=("dicom", "png"), default=None, help="old spelling of --case dicom/png")
    parser.add_argument("--side", type=int, default=6000, help="side of the png case in pixels (default 6000)")
    parser.add_argument("--max-megapixels", type=float, default=None,
                        help="cap of the 'frames' decoder (default: rlar.data.io.MAX_PIXELS)")
    parser.add_argument("--limit-mb", type=float, default=500.0, help="fail above this peak (default 500)")
    parser.add_argument("--child-limit-mb", type=float, default=6000.0,
                        help="address-space cap of each child, so that unfixed code fails instead of swapping")
    parser.add_argument("--src", type=Path, default=None, help="source tree to import rlar from in the child")
    args = parser.parse_args(argv)
    case = args.format or args.case
    names = [name for name in cases if name != "png"] if case == "all" else [case]
    cases = _cases(args.side)
    if args.max_megapixels is not None:
        max_pixels = int(args.max_megapixels * 1e6)
    else:
        sys.path.insert(0, str(args.src or REPO / "src"))
        from rlar.data.io import MAX_PIXELS

        max_pixels = MAX_PIXELS
    worst = 0.0
    idle, _, _ = child_peak([sys.executable, "-c", "import rlar.data.io, pydicom, PIL.Image"], args.src)
    print(f"python importing the decoder, nothing decoded: {idle:.0f} MB peak")
    for name in names:
        decoder, build = cases[name]
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            start = time.perf_counter()
            image = build(root)
            made = time.perf_counter() - start
            size = f"{image.stat().st_size / 1e6:.2f} MB on disk ({made:.1f} s to write)"
            start = time.perf_counter()
            if decoder == "summary":
                peak, code, output = summary_peak_mb(root, src=args.src, limit_mb=args.child_limit_mb)
                lines = [line.strip() for line in output.splitlines() if "huge" in line or "images:" in line]
            else:
                peak, code, output = frames_peak_mb(image, max_pixels, args.src, args.child_limit_mb)
                lines = [line.strip() for line in output.splitlines() if line.strip()][-1:]
            took = time.perf_counter() - start
        worst = max(worst, peak)
        print(f"{name}: {image.name}, {size}; {decoder} decoder exit code {code}, {took:.1f} s, "
              f"peak resident memory of the child {peak:.0f} MB (limit {args.limit_mb:.0f})")
        for line in lines[:4]:
            print(f"    {line[:300]}")
    return 0 if worst <= args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
