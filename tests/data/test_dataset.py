"""ThyroidDataset and collate: batch contract, labels, radiomics lookup, geometry, augmentation, determinism."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from rlar.data.dataset import RADIOMICS_DIM, ThyroidDataset, collate, fit_size
from rlar.data.labels import LabelSpace
from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source
from rlar.errors import DataError


class ToySource(Source):
    """In-memory source: ``items`` maps image_id -> (image, mask|None, tirads, scale, extras)."""

    name = "toy"
    scale = "acr"

    def __init__(self, items: dict[str, tuple]) -> None:
        self.items = items
        self.loads = 0
        super().__init__(None)

    def _scan(self) -> Iterator[SampleInfo]:
        for image_id, (image, mask, tirads, scale, _) in self.items.items():
            yield SampleInfo(
                image_id=image_id,
                patient_id=f"patient-{image_id}",
                source=self.name,
                tirads=tirads,
                scale=scale,
                has_mask=mask is not None,
                location=image_id,
            )

    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        self.loads += 1
        image, mask, _, _, extras = self.items[info.location]
        if image is None:
            raise DataError(info.image_id, "cannot decode image (corrupt file)")
        return image, mask, extras


def blob_item(shape=(48, 64), top=6, left=8, height=14, width=10, tirads="TR3", scale="acr", extras=None):
    """Image = bright rectangle on a dark background; mask = the same rectangle."""
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    image = np.where(mask, 0.95, 0.05).astype(np.float32)
    return (image, mask, tirads, scale, extras or {})


def test_collate_batch_contract_and_labels() -> None:
    rng = np.random.default_rng(0)
    items = {
        "a": blob_item(tirads="TR1"),
        "b": blob_item(tirads="TR5"),
        "c": (rng.random((30, 20)).astype(np.float32), None, None, "acr", {}),  # no mask, unknown label
    }
    ds = ThyroidDataset(ToySource(items), None, (32, 40), LabelSpace("acr"))
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate)))
    assert set(batch) == {"image", "mask", "has_mask", "label", "radiomics", "has_radiomics", "image_id", "patient_id"}
    assert batch["image"].shape == (3, 1, 32, 40) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (3, 1, 32, 40) and batch["mask"].dtype == torch.float32
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    assert batch["has_mask"].dtype == torch.bool and batch["has_mask"].tolist() == [True, True, False]
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [0, 4, -1]
    assert batch["radiomics"].shape == (3, RADIOMICS_DIM) and batch["radiomics"].dtype == torch.float32
    assert batch["has_radiomics"].tolist() == [False, False, False]
    assert batch["image_id"] == ["a", "b", "c"] and batch["patient_id"] == ["patient-a", "patient-b", "patient-c"]
    assert batch["mask"][2].sum() == 0  # unannotated -> zeros
    assert float(batch["image"].min()) >= 0.0 and float(batch["image"].max()) <= 1.0
    assert batch["mask"][0].sum() > 0


def test_binary_task_and_image_id_selection_order() -> None:
    items = {"a": blob_item(tirads="TR2"), "b": blob_item(tirads="TR4"), "c": blob_item(tirads="TR3")}
    ds = ThyroidDataset(ToySource(items), ["c", "a"], (16, 16), LabelSpace("acr", "binary"))
    assert [ds[i]["image_id"] for i in range(len(ds))] == ["c", "a"]
    assert ds.labels.tolist() == [0, 0]
    ds_b = ThyroidDataset(ToySource(items), ["b"], (16, 16), LabelSpace("acr", "binary"))
    assert ds_b[0]["label"] == 1


def test_label_errors_name_the_image() -> None:
    items = {"ddti-one": blob_item(tirads="4a", scale="ddti")}
    with pytest.raises(DataError, match="ddti-one") as err:
        ThyroidDataset(ToySource(items), None, (16, 16), LabelSpace("acr"))
    assert "ddti scale" in str(err.value)
    # A level that is not on the declared scale at all.
    bad = {"odd": blob_item(tirads="TR7", scale="acr")}
    with pytest.raises(DataError, match="odd"):
        ThyroidDataset(ToySource(bad), None, (16, 16), LabelSpace("acr"))
    # Without a label space everything is unknown (segmentation-only use).
    ds = ThyroidDataset(ToySource(items), None, (16, 16), None)
    assert ds[0]["label"] == -1


def test_unknown_and_duplicate_ids_rejected() -> None:
    src = ToySource({"a": blob_item()})
    with pytest.raises(DataError, match="'?zzz'?"):
        ThyroidDataset(src, ["zzz"], (16, 16), LabelSpace("acr"))
    with pytest.raises(DataError, match="twice"):
        ThyroidDataset(src, ["a", "a"], (16, 16), LabelSpace("acr"))


def test_radiomics_lookup_by_image_id() -> None:
    items = {k: blob_item() for k in ("a", "b", "c")}
    values = np.arange(3 * RADIOMICS_DIM, dtype=np.float64).reshape(3, RADIOMICS_DIM)
    values[2, 4] = np.nan  # "c" has an unusable row
    frame = pd.DataFrame(values, index=["b", "zz-not-in-dataset", "c"], columns=[f"f{i}" for i in range(13)])
    frame.loc["a_missing_from_frame_is_fine"] = 0.0
    ds = ThyroidDataset(ToySource(items), ["a", "b", "c"], (16, 16), LabelSpace("acr"), radiomics=frame.drop(
        index="a_missing_from_frame_is_fine"))
    batch = collate([ds[i] for i in range(3)])
    assert batch["has_radiomics"].tolist() == [False, True, False]
    np.testing.assert_allclose(batch["radiomics"][1].numpy(), values[0].astype(np.float32))
    assert batch["radiomics"][0].abs().sum() == 0 and batch["radiomics"][2].abs().sum() == 0
    with pytest.raises(DataError, match="13 feature columns"):
        ThyroidDataset(ToySource(items), None, (16, 16), LabelSpace("acr"), radiomics=frame.iloc[:, :5])


def test_aspect_preserving_resize_keeps_taller_than_wide() -> None:
    # A tall narrow frame (120 x 40) holding a taller-than-wide nodule (30 x 15). Stretching to 32 x 32 would
    # make it 8 x 12 (wider than tall); fitting keeps 8 x 4 and pads the sides with zeros.
    items = {"tall": blob_item(shape=(120, 40), top=40, left=10, height=30, width=15)}
    ds = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"))
    assert fit_size((120, 40), (32, 32)) == (32, 11)
    item = ds[0]
    rows, cols = np.nonzero(item["mask"][0].numpy())
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height > width
    assert abs(height / width - 2.0) < 0.6
    image = item["image"][0].numpy()
    assert np.all(image[:, :10] == 0) and np.all(image[:, -10:] == 0)  # symmetric zero padding
    assert image[:, 12:20].max() > 0.04  # content in the middle


def test_mask_key_reads_extras() -> None:
    alt = np.zeros((48, 64), dtype=bool)
    alt[30:40, 40:60] = True
    items = {"a": blob_item(extras={"reader_1": alt, "ground_truth_params": {"x": 1}})}
    ds = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"), mask_key="reader_1")
    np.testing.assert_array_equal(ds[0]["mask"][0].numpy().astype(bool), alt)
    ds_missing = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"), mask_key="reader_9")
    with pytest.raises(DataError, match="reader_9"):
        ds_missing[0]


def test_decode_failure_raises_data_error() -> None:
    items = {"good": blob_item(), "broken": (None, None, "TR2", "acr", {})}
    ds = ThyroidDataset(ToySource(items), None, (16, 16), LabelSpace("acr"))
    assert ds[0]["image"].shape == (1, 16, 16)
    with pytest.raises(DataError, match="broken"):
        ds[1]


def test_cache_in_memory_avoids_second_decode() -> None:
    src = ToySource({"a": blob_item(), "b": blob_item()})
    ds = ThyroidDataset(src, None, (16, 16), LabelSpace("acr"), augment=True, cache_in_memory=True)
    for _ in range(3):
        for i in range(len(ds)):
            ds[i]
    assert src.loads == 2
    src2 = ToySource({"a": blob_item()})
    ds2 = ThyroidDataset(src2, None, (16, 16), LabelSpace("acr"))
    ds2[0], ds2[0]
    assert src2.loads == 2


def _centroid(mask: torch.Tensor) -> tuple[float, float]:
    rows, cols = np.nonzero(mask[0].numpy())
    return rows.mean(), cols.mean()


def test_augmentation_keeps_image_and_mask_aligned_and_never_flips_vertically() -> None:
    # Nodule in the top-left quadrant of a 48 x 64 frame: a left-right flip moves it right, a vertical flip
    # would move it to the bottom (forbidden), rotation/scale move it only a little.
    items = {"a": blob_item(shape=(48, 64), top=6, left=8, height=14, width=10)}
    ds = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"), augment=True, seed=3)
    plain = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"))[0]
    changed, flipped, left = 0, 0, 0
    for _ in range(24):
        item = ds[0]
        mask = item["mask"][0].numpy() > 0.5
        bright = item["image"][0].numpy() > 0.5
        assert set(np.unique(item["mask"].numpy())) <= {0.0, 1.0}
        iou = (mask & bright).sum() / (mask | bright).sum()
        assert iou > 0.8, f"image and mask drifted apart (IoU {iou:.2f})"
        row, col = _centroid(item["mask"])
        assert row < 24, "nodule moved to the lower half: vertical flip or excessive affine"
        flipped += col > 32
        left += col < 32
        changed += not torch.equal(item["mask"], plain["mask"])
    assert flipped > 0 and left > 0  # horizontal flips do happen, and not always
    assert changed > 12  # the geometry is really being augmented


def test_augmentation_is_deterministic_given_seed_and_epoch() -> None:
    items = {k: blob_item(top=5 + i, left=7 + 2 * i) for i, k in enumerate("abcd")}

    def run(seed: int, order: list[int], epoch: int = 0) -> dict[int, dict]:
        ds = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"), augment=True, seed=seed)
        ds.set_epoch(epoch)
        return {i: ds[i] for i in order}

    first = run(0, [0, 1, 2, 3])
    again = run(0, [3, 1, 2, 0])  # loading order (or worker layout) does not matter
    other_seed = run(1, [0, 1, 2, 3])
    other_epoch = run(0, [0, 1, 2, 3], epoch=1)
    for i in range(4):
        assert torch.equal(first[i]["image"], again[i]["image"])
        assert torch.equal(first[i]["mask"], again[i]["mask"])
    assert any(not torch.equal(first[i]["image"], other_seed[i]["image"]) for i in range(4))
    assert any(not torch.equal(first[i]["image"], other_epoch[i]["image"]) for i in range(4))
    # Without augmentation, items are exactly reproducible across visits.
    ds = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"))
    assert torch.equal(ds[1]["image"], ds[1]["image"])


def _elongation(mask: torch.Tensor) -> float:
    """sqrt of the ratio of the principal second moments: the length/width ratio, whatever the rotation."""
    rows, cols = np.nonzero(mask[0].numpy())
    eigen = np.linalg.eigvalsh(np.cov(np.stack([rows, cols]).astype(float)))
    return float(np.sqrt(eigen[1] / eigen[0]))


def test_augmentation_scales_isotropically() -> None:
    # A 30 x 15 taller-than-wide nodule: rotation and isotropic scaling keep its 2:1 elongation; per-axis
    # scale factors in 0.9-1.1 would move it anywhere between about 1.6 and 2.4.
    items = {"a": blob_item(shape=(64, 64), top=17, left=25, height=30, width=15)}
    ds = ThyroidDataset(ToySource(items), None, (64, 64), LabelSpace("acr"), augment=True, seed=5)
    plain = ThyroidDataset(ToySource(items), None, (64, 64), LabelSpace("acr"))[0]
    assert _elongation(plain["mask"]) == pytest.approx(2.0, abs=0.05)
    ratios = [_elongation(ds[0]["mask"]) for _ in range(20)]
    assert max(abs(r - 2.0) for r in ratios) < 0.12, ratios
