"""AIMISource: HDF5 frames joined to metadata.csv, lazy per-frame reads, fork/pickle safety, bounded memory."""

from __future__ import annotations

import multiprocessing
import pickle
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rlar.data.sources import open_source
from rlar.data.sources.aimi import AIMISource, clip_id_of, descriptor_from_metadata
from rlar.data.sources.base import Source
from rlar.errors import ConfigError, DataError

FRAMES = {"12_": 4, "3_": 4, "7_": 4, "20_": 4}  # clip 20 has no metadata row; clip 99 has no frames


def meta_row(annot: str, comp: str | int, echo: str | int, shape: str | int, margin: str | int, foci: str | int,
             level: str | int, diag: int = 0) -> list[object]:
    return [annot, 50, "F", "left", 1.2, 0.9, 1.0, comp, echo, shape, margin, foci, level, diag]


@pytest.fixture
def aimi_root(tmp_path: Path, writers: SimpleNamespace) -> tuple[Path, dict[tuple[str, int], int]]:
    root = tmp_path / "aimi"
    rows = writers.aimi_hdf5(root / "dataset.hdf5", FRAMES, shape=(64, 64))
    writers.csv(
        root / "metadata.csv",
        writers.aimi_columns,
        [
            meta_row("12_", "Solid", "Very-Hypoechoic", "wider_than_tall", "Smooth", "none", 4),  # ACR words
            meta_row("3_", 2, 2, 3, 2, 3, 5, 1),  # ACR points (as seen in the public metadata.csv)
            meta_row("7_", 0, 1, 0, 0, 4, "TR9"),  # ambiguous points, a foci sum, an invalid level
            meta_row("99_", 2, 2, 0, 0, 0, 3),
        ],
    )
    return root, rows


def reasons(source: Source, item: str) -> list[str]:
    return [s.reason for s in source.skips if s.item == item]


def test_scan_joins_frames_to_metadata(aimi_root: tuple[Path, dict[tuple[str, int], int]]) -> None:
    root, _ = aimi_root
    source = AIMISource(root)
    assert source.name == "aimi" and source.scale == "acr"
    assert len(source) == 16
    assert [i.image_id for i in source.infos[:5]] == ["3_0", "3_1", "3_2", "3_3", "7_0"]  # clips in numeric order
    assert {i.clip_id for i in source.infos} == {"3", "7", "12", "20"}
    assert all(i.patient_id == i.clip_id and i.image_id == f"{i.clip_id}_{i.frame}" for i in source.infos)
    first = {i.clip_id: i for i in reversed(source.infos)}  # frame 0 of each clip
    assert first["12"].tirads == "TR4"
    assert first["12"].descriptors == {
        "composition": "solid", "echogenicity": "very_hypoechoic", "shape": "wider_than_tall",
        "margin": "smooth", "echogenic_foci": "none",
    }
    assert first["3"].tirads == "TR5"
    assert first["3"].descriptors == {
        "composition": "solid", "echogenicity": "hypoechoic", "shape": "taller_than_wide",
        "margin": "lobulated_irregular", "echogenic_foci": "punctate",
    }
    assert first["7"].tirads is None and set(first["7"].descriptors.values()) == {None, "wider_than_tall"}
    assert first["20"].tirads is None and not any(first["20"].descriptors.values())
    # every unusable value names the clip and the value
    seven = reasons(source, "7")
    assert any("'TR9'" in r for r in seven)
    assert any("ti-rads_composition" in r and "ambiguous" in r and "spongiform" in r for r in seven)
    assert any("ti-rads_echogenicity" in r and "ambiguous" in r for r in seven)
    assert any("ti-rads_margin" in r and "ambiguous" in r for r in seven)
    assert any("ti-rads_echogenicfoci" in r and "'4'" in r for r in seven)
    assert len(seven) == 5
    assert any("no frames" in r for r in reasons(source, "99"))
    assert any("no metadata row" in n and "20" in n for n in source.notes), source.notes
    assert source.clip_metadata["3"]["histopath_diagnosis"] == "1"
    assert all(i.has_mask for i in source.infos)


def test_frames_are_read_lazily_from_the_right_rows(aimi_root: tuple[Path, dict[tuple[str, int], int]],
                                                    writers: SimpleNamespace) -> None:
    root, rows = aimi_root
    source = AIMISource(root)
    assert source._h5 is None  # scanning keeps no handle (nothing to inherit across a fork)
    for index in (0, 6, 15):
        info = source.infos[index]
        sample = source[index]
        assert info.frame is not None
        row = rows[(f"{info.clip_id}_", info.frame)]
        assert info.location == row
        np.testing.assert_allclose(sample.image, writers.pattern(row, (64, 64)) / 255.0, atol=1e-6)
        expected_mask = writers.box_mask((64, 64), top=4, left=info.frame, size=8) > 0
        np.testing.assert_array_equal(sample.mask, expected_mask)
    handle = source._h5
    source[1]
    assert source._h5 is handle  # opened once per process
    source.close()
    assert source._h5 is None
    assert source[2].image.shape == (64, 64)  # re-opened on demand


def _read_in_child(source: AIMISource, index: int, queue: multiprocessing.Queue[tuple[bool, float]]) -> None:
    queue.put((source._h5 is not None, float(source[index].image.sum())))


def test_forked_child_reopens_and_pickled_copy_works(aimi_root: tuple[Path, dict[tuple[str, int], int]]) -> None:
    root, _ = aimi_root
    source = AIMISource(root)
    expected = float(source[5].image.sum())  # parent opens its handle first
    parent_handle = source._h5
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(source, 5, queue))
    child.start()
    inherited, total = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0 and inherited  # the child saw the parent's handle object ...
    assert total == pytest.approx(expected)  # ... yet read correctly through its own
    assert source._h5 is parent_handle  # the parent's handle was not touched
    clone = pickle.loads(pickle.dumps(source))
    assert clone._h5 is None and float(clone[5].image.sum()) == pytest.approx(expected)


def test_frame_stride_subsamples_each_clip(aimi_root: tuple[Path, dict[tuple[str, int], int]]) -> None:
    root, _ = aimi_root
    source = open_source("aimi", root, frame_stride=3)
    assert [(i.clip_id, i.frame) for i in source.infos if i.clip_id == "12"] == [("12", 0), ("12", 3)]
    assert len(source) == 8
    with pytest.raises(ConfigError, match="frame_stride"):
        AIMISource(root, frame_stride=0)


def test_chunked_scan_matches_single_pass(aimi_root: tuple[Path, dict[tuple[str, int], int]]) -> None:
    root, _ = aimi_root
    whole = AIMISource(root)
    chunked = AIMISource(root, chunk_rows=3)  # 16 rows in chunks of 3: the last chunk is partial
    assert [(i.image_id, i.location) for i in chunked.infos] == [(i.image_id, i.location) for i in whole.infos]


def test_duplicate_frames_missing_datasets_and_files(tmp_path: Path, writers: SimpleNamespace) -> None:
    import h5py

    root = tmp_path / "dup"
    writers.aimi_hdf5(root / "dataset.hdf5", {"1_": 2}, shape=(16, 16), shuffle_seed=None)
    with h5py.File(root / "dataset.hdf5", "a") as f:
        f["frame_num"][1] = 0  # two rows claim frame 0 of clip 1
    source = AIMISource(root)  # no metadata.csv: labels unknown, with a note
    assert [i.image_id for i in source.infos] == ["1_0"]
    assert any("duplicate frame" in r for r in reasons(source, "1_0"))
    assert any("metadata.csv not found" in n for n in source.notes)
    with h5py.File(root / "dataset.hdf5", "a") as f:
        del f["frame_num"]
    with pytest.raises(DataError, match="frame_num"):
        AIMISource(root)
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="not found"):
        AIMISource(tmp_path / "none")


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("composition", "2", "solid"),
        ("composition", "1.0", "mixed"),
        ("echogenicity", "3", "very_hypoechoic"),
        ("echogenicity", "0", "anechoic"),
        ("shape", "0", "wider_than_tall"),
        ("margin", "3", "extrathyroidal_extension"),
        ("echogenic_foci", "2", "rim"),
        ("echogenic_foci", "Macrocalcifications", "macrocalcifications"),
        ("margin", "ill-defined", "ill_defined"),
        ("shape", "", None),
    ],
)
def test_descriptor_from_metadata_points_and_words(name: str, raw: str, expected: str | None) -> None:
    assert descriptor_from_metadata(name, raw) == expected


@pytest.mark.parametrize(("name", "raw"), [("shape", "1"), ("margin", "0"), ("echogenic_foci", "5"), ("margin", "jagged")])
def test_descriptor_from_metadata_rejects(name: str, raw: str) -> None:
    with pytest.raises(DataError):
        descriptor_from_metadata(name, raw)


def test_clip_id_of() -> None:
    assert clip_id_of(b"12_") == "12" and clip_id_of(np.bytes_(b" 7_ ")) == "7" and clip_id_of("130_") == "130"


def _peak_bytes_open_and_read(root: Path) -> tuple[int, int]:
    """Peak traced bytes while opening the source and reading three frames; also the frame count."""
    tracemalloc.start()
    try:
        source = AIMISource(root)
        for index in (0, len(source) // 2, len(source) - 1):
            source[index]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    source.close()
    return peak, len(source)


def test_memory_does_not_grow_with_pixel_data(tmp_path: Path, writers: SimpleNamespace) -> None:
    import h5py

    shape, frames_per_clip = (64, 64), 100
    roots = {}
    for name, clips in (("small", 2), ("big", 20)):  # 200 vs 2000 frames (big: ~16 MB of pixels + masks)
        roots[name] = tmp_path / name
        writers.aimi_hdf5(roots[name] / "dataset.hdf5", {f"{c}_": frames_per_clip for c in range(clips)}, shape=shape)
        writers.csv(roots[name] / "metadata.csv", writers.aimi_columns,
                    [meta_row(f"{c}_", 2, 2, 0, 2, 1, 4) for c in range(clips)])
    AIMISource(roots["small"])  # warm-up: first-use imports are not the source's memory
    peak_small, n_small = _peak_bytes_open_and_read(roots["small"])
    peak_big, n_big = _peak_bytes_open_and_read(roots["big"])
    assert (n_small, n_big) == (200, 2000)

    # The instrument sees HDF5 reads: loading the image column eagerly shows up in full.
    pixel_bytes_per_frame = 2 * shape[0] * shape[1]  # image + mask, uint8
    tracemalloc.start()
    try:
        with h5py.File(roots["big"] / "dataset.hdf5", "r") as f:
            eager = f["image"][:]
        _, eager_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert eager_peak >= eager.nbytes * 0.9

    # Opening + reading 3 frames costs a small fraction of the pixel data, and each extra frame adds only its
    # index entry (~200 B measured), not its pixels (8 KB).
    assert peak_big < 0.1 * n_big * pixel_bytes_per_frame, peak_big
    per_extra_frame = (peak_big - peak_small) / (n_big - n_small)
    assert per_extra_frame < 0.1 * pixel_bytes_per_frame, per_extra_frame
    assert peak_big / peak_small < 0.5 * (n_big / n_small), (peak_big, peak_small)
