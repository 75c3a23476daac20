"""compute_targets over a source: rows, skips, and the on-disk cache with provenance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source
from rlar.errors import DataError
from rlar.radiomics import FEATURE_NAMES, FEATURES_VERSION, RadiomicsParams, compute_targets, extract_features
from tests.radiomics.conftest import SceneFactory


class TinySource(Source):
    """In-memory source: a few small speckle scenes, one without mask, one with an empty mask, one undecodable."""

    name = "tiny"

    def __init__(self, scenes: dict[str, tuple[np.ndarray, np.ndarray | None]], broken: tuple[str, ...] = ()) -> None:
        self.scenes = scenes
        self.broken = broken
        self.loads = 0
        super().__init__(None)

    def _scan(self) -> Iterator[SampleInfo]:
        for image_id, (_, mask) in self.scenes.items():
            yield SampleInfo(image_id=image_id, patient_id=image_id, source=self.name, has_mask=mask is not None)

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        self.loads += 1
        if info.image_id in self.broken:
            raise DataError(f"{info.image_id}.png", "cannot decode image (test)")
        image, mask = self.scenes[info.image_id]
        return image, mask, {}


def _masked(scene: tuple[np.ndarray, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """A scene that has its mask, typed as such."""
    image, mask = scene
    assert mask is not None
    return image, mask


@pytest.fixture
def scenes(make_scene: SceneFactory) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    a, b, c = (make_scene(seed, shape=(48, 56), radii=(10.0, 14.0)) for seed in range(3))
    return {
        "a": a,
        "b": b,
        "no_mask": (c[0], None),
        "empty": (c[0], np.zeros_like(c[1])),
        "c": c,
    }


def test_rows_skips_and_values(scenes: dict[str, tuple[np.ndarray, np.ndarray | None]], tmp_path: Path) -> None:
    source = TinySource(scenes, broken=("c",))
    frame = compute_targets(source, tmp_path, progress=False)
    assert list(frame.index) == ["a", "b"] and frame.index.name == "image_id"
    assert list(frame.columns) == list(FEATURE_NAMES) and (frame.dtypes == np.float64).all()
    np.testing.assert_array_equal(frame.loc["a"].to_numpy(), extract_features(*_masked(scenes["a"])))
    skipped = {s.item: s.reason for s in frame.attrs["skips"]}
    assert skipped == {"empty": "mask is empty: no nodule pixel to measure", "c.png": "cannot decode image (test)"}
    assert frame.attrs["cache"] == {"hits": 0, "misses": 3}  # a, b, empty; c failed to decode; no_mask not tried


def test_second_run_hits_cache_and_changed_image_is_recomputed(scenes: dict[str, tuple[np.ndarray,
                                                               np.ndarray | None]], tmp_path: Path) -> None:
    first = compute_targets(TinySource(scenes), tmp_path, progress=False)
    assert first.attrs["cache"] == {"hits": 0, "misses": 4}

    second = compute_targets(TinySource(scenes), tmp_path, progress=False)
    assert second.attrs["cache"] == {"hits": 4, "misses": 0}
    np.testing.assert_array_equal(second.to_numpy(), first.to_numpy())  # float64 round-trips through JSON
    assert [s.item for s in second.attrs["skips"]] == ["empty"]  # cached failure is reported again

    changed = dict(scenes)
    image, mask = scenes["b"]
    changed["b"] = (np.clip(image * 0.5, 0, 1).astype(np.float32), mask)
    third = compute_targets(TinySource(changed), tmp_path, progress=False)
    assert third.attrs["cache"] == {"hits": 3, "misses": 1}
    np.testing.assert_array_equal(third.loc["b"].to_numpy(), extract_features(*_masked(changed["b"])))
    # halving the grey values halves the spread in fixed-width bins: the recomputed texture differs
    assert third.loc["b", "glcm_contrast"] < first.loc["b", "glcm_contrast"]

    changed_mask = dict(changed)  # keep the changed "b": only "a" differs from the cached inputs
    shrunk = _masked(scenes["a"])[1].copy()
    shrunk[: shrunk.shape[0] // 2] = False
    changed_mask["a"] = (scenes["a"][0], shrunk)
    fourth = compute_targets(TinySource(changed_mask), tmp_path, progress=False)
    assert fourth.attrs["cache"]["misses"] == 1
    assert fourth.loc["a", "taller_than_wide"] < first.loc["a", "taller_than_wide"]


def test_cache_file_records_provenance_and_params_select_file(scenes: dict[str, tuple[np.ndarray, np.ndarray | None]],
                                                              tmp_path: Path) -> None:
    frame = compute_targets(TinySource(scenes), tmp_path, progress=False)
    path = Path(frame.attrs["cache_path"])
    payload = json.loads(path.read_text())
    assert payload["provenance"]["features_version"] == FEATURES_VERSION
    assert payload["provenance"]["params"] == json.loads(RadiomicsParams().to_json())
    assert payload["provenance"]["feature_names"] == list(FEATURE_NAMES)
    assert len(payload["entries"]["a"]["input_hash"]) == 64 and len(payload["entries"]["a"]["values"]) == 13

    other = compute_targets(TinySource(scenes), tmp_path, RadiomicsParams(ring_width=4), progress=False)
    assert other.attrs["cache"] == {"hits": 0, "misses": 4}  # new params: nothing reused
    assert other.attrs["cache_path"] != frame.attrs["cache_path"] and path.is_file()
    assert not np.array_equal(other["echo_ratio"].to_numpy(), frame["echo_ratio"].to_numpy())
    # the first parameter set is still cached
    assert compute_targets(TinySource(scenes), tmp_path, progress=False).attrs["cache"]["misses"] == 0


def test_corrupt_cache_is_rebuilt_and_reported(scenes: dict[str, tuple[np.ndarray, np.ndarray | None]],
                                               tmp_path: Path) -> None:
    frame = compute_targets(TinySource(scenes), tmp_path, progress=False)
    Path(frame.attrs["cache_path"]).write_text("{ truncated")
    again = compute_targets(TinySource(scenes), tmp_path, progress=False)
    assert again.attrs["cache"] == {"hits": 0, "misses": 4}
    assert any("unreadable cache" in s.reason for s in again.attrs["skips"])
    np.testing.assert_array_equal(again.to_numpy(), frame.to_numpy())
    json.loads(Path(frame.attrs["cache_path"]).read_text())  # rewritten as valid JSON


def test_source_without_masks_gives_empty_frame(scenes: dict[str, tuple[np.ndarray, np.ndarray | None]],
                                                tmp_path: Path) -> None:
    frame = compute_targets(TinySource({"x": (scenes["a"][0], None)}), tmp_path, progress=False)
    assert frame.shape == (0, 13) and list(frame.columns) == list(FEATURE_NAMES)
    assert frame.attrs["cache"] == {"hits": 0, "misses": 0}


@pytest.mark.ddti
def test_real_ddti_subset_targets_and_cache(ddti_root: Path, tmp_path: Path) -> None:
    from rlar.data.sources import open_source

    source = open_source("ddti", ddti_root)
    source.infos = [info for info in source.infos if info.has_mask][:4]  # keep the test fast
    frame = compute_targets(source, tmp_path, progress=False)
    assert frame.shape == (4, 13) and np.isfinite(frame.to_numpy()).all()
    assert frame.attrs["cache"] == {"hits": 0, "misses": 4} and frame.attrs["skips"] == []
    # sanity of real values: fractions in [0, 1], positive ratios, GLCM homogeneity in (0, 1]
    for col in ("cystic_fraction", "bright_focus_fraction", "solidity", "circularity", "elongation"):
        assert frame[col].between(0.0, 1.0).all(), col
    assert (frame["echo_ratio"] > 0).all() and frame["glcm_homogeneity"].between(0.0, 1.0).all()
    again = compute_targets(source, tmp_path, progress=False)
    assert again.attrs["cache"] == {"hits": 4, "misses": 0}
    np.testing.assert_array_equal(again.to_numpy(), frame.to_numpy())


def test_tiny_masks_are_skips_with_reason_never_rows(make_scene: SceneFactory, tmp_path: Path) -> None:
    image, mask = make_scene(0, shape=(48, 56), radii=(10.0, 14.0))
    stray = np.zeros_like(mask)
    stray[5, 7] = True  # one stray pixel: dropped by the source when decoded
    small = np.zeros_like(mask)
    small[20:24, 20:24] = True  # 16 pixels: a valid mask for the source, below a raised radiomics minimum
    source = TinySource({"ok": (image, mask), "stray": (image, stray), "small": (image, small)})
    frame = compute_targets(source, tmp_path, RadiomicsParams(min_nodule_pixels=20), progress=False)
    assert list(frame.index) == ["ok"]
    reasons = {s.item: s.reason for s in frame.attrs["skips"]}
    assert reasons["stray"] == "mask too small: fewer than 16 pixels; image kept without mask; no radiomics target"
    assert reasons["small"] == "mask too small: fewer than 20 pixels; no radiomics target"
    assert [s.item for s in source.skips] == ["stray"]  # the source records its own drop once
