"""Content groups: identical and near-identical images join their patients into one split group."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from rlar.data.grouping import (
    DEFAULT_NEAR_THRESHOLD,
    HASH_SIZE,
    content_hash,
    dhash,
    format_merged,
    group_images,
    group_source,
)
from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source
from rlar.errors import DataError


def _scan(seed: int, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    """A smooth random 'scan' (so that a few changed pixels do not flip many dHash bits)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 8))
    return np.kron(coarse, np.ones((shape[0] // 6, shape[1] // 8))).astype(np.float32)


class CopySource(Source):
    """p0..p5 each with one image; p3 holds an exact copy of p1's scan, p4 a slightly altered copy of p2's,
    p5's file is unreadable."""

    name = "copies"
    needs_root = False

    def __init__(self) -> None:
        super().__init__(None)

    def _scan(self) -> Iterator[SampleInfo]:
        for p in range(6):
            yield SampleInfo(image_id=f"{p}_1", patient_id=str(p), source=self.name, location=p)

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        p = info.location
        if p == 5:
            raise DataError(f"/data/{p}_1.png", "zero-byte file")
        image = _scan({3: 1}.get(p, p))
        if p == 4:
            image = _scan(2).copy()
            image[0:10, 0:10] += 0.1  # a brighter corner: 4 of 256 dHash bits differ
        return image, None, {}


def test_dhash_has_the_documented_size_and_is_stable_under_small_changes():
    a = _scan(0)
    bits = dhash(a)
    assert bits.shape == (HASH_SIZE * HASH_SIZE,) and bits.dtype == bool
    noisy = a + np.random.default_rng(1).normal(0, 0.01, a.shape).astype(np.float32)
    assert int((dhash(noisy) != bits).sum()) <= DEFAULT_NEAR_THRESHOLD
    assert int((dhash(_scan(9)) != bits).sum()) > 3 * DEFAULT_NEAR_THRESHOLD  # another scan: far away
    assert content_hash(a).exact == content_hash(a.copy()).exact != content_hash(noisy).exact


def test_identical_and_near_identical_images_merge_their_patients():
    source = CopySource()
    grouping = group_source(source, progress=False)
    assert [s.item for s in grouping.unreadable] == ["5_1"]
    assert grouping.group_of["1_1"] == grouping.group_of["3_1"] == "1+3"
    assert grouping.group_of["2_1"] == grouping.group_of["4_1"] == "2+4"
    assert grouping.group_of["0_1"] == "0" and grouping.group_of["5_1"] == "5"
    kinds = {(link.a, link.b): link.kind for link in grouping.links}
    assert kinds == {("1_1", "3_1"): "identical", ("2_1", "4_1"): "near"}
    assert [link.distance for link in grouping.links] == [0, 4]
    assert [g.patients for g in grouping.merged] == [("1", "3"), ("2", "4")]
    lines = format_merged(grouping)
    assert "groups merged by content" in lines[0] and ": 2" in lines[0]
    assert lines[1] == "  patients 1, 3: identical images 1_1, 3_1"
    assert lines[2] == "  patients 2, 4: near-identical 2_1~4_1 (4 bits)"


def test_patient_links_chain_with_content_links():
    # a2 shares patient a with a1; a2 is a copy of b1; b1 shares patient b with b2 -> one group of four images
    infos = [SampleInfo(i, p, "t") for i, p in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b"), ("c1", "c"))]
    hashes = {i.image_id: content_hash(_scan(k)) for k, i in enumerate(infos)}
    hashes["b1"] = hashes["a2"]
    grouping = group_images(infos, hashes)
    assert {grouping.group_of[i] for i in ("a1", "a2", "b1", "b2")} == {"a+b"}
    assert grouping.group_of["c1"] == "c"
    assert group_images(infos, None).group_of["b1"] == "b"  # patients only


def test_threshold_zero_keeps_only_identical_links():
    grouping = group_source(CopySource(), near_threshold=0, progress=False)
    assert grouping.group_of["4_1"] == "4" and grouping.group_of["3_1"] == "1+3"


@pytest.mark.ddti
def test_ddti_duplicate_images_share_a_group(ddti_root):
    from rlar.data.sources import open_source

    grouping = group_source(open_source("ddti", ddti_root), progress=False)
    first = {grouping.group_of[i] for i in ("150_1", "233_2", "323_1", "326_1", "349_1")}
    second = {grouping.group_of[i] for i in ("353_2", "396_1")}
    assert len(first) == 1 and len(second) == 1 and first != second
    merged = {g.group: g for g in grouping.merged}
    source_patients = {i.image_id: i.patient_id for i in open_source("ddti", ddti_root).infos}
    assert set(merged[first.pop()].patients) == {source_patients[f"{c}_1"] for c in (150, 323, 326, 349)} | {
        source_patients["233_2"]}
    assert set(merged[second.pop()].patients) == {source_patients["353_2"], source_patients["396_1"]}
    assert len(grouping.merged) == 2  # and no other case pair is merged at the default threshold
