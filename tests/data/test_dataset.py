"""ThyroidDataset and collate: batch contract, labels, radiomics lookup, geometry, cache and skips, batch
augmentation through collate_fn, determinism."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from rlar.data.dataset import BATCH_KEYS, RADIOMICS_DIM, ThyroidDataset, collate, fit_size, prepare_image
from rlar.data.labels import LabelSpace
from rlar.data.record import SampleInfo
from rlar.data.sources.base import Source
from rlar.errors import ConfigError, DataError


class ToySource(Source):
    """In-memory source: ``items`` maps image_id -> (image, mask|None, tirads, scale, extras)."""

    name = "toy"
    scale = "acr"

    def __init__(self, items: dict[str, tuple]) -> None:
        self.items = items
        self.loads = 0
        super().__init__(None)

    def _scan(self) -> Iterator[SampleInfo]:
        for image_id, (_image, mask, tirads, scale, _) in self.items.items():
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
    # Label problems come from metadata: they are raised before any pixel is decoded.
    source = ToySource({"fine": blob_item(), **items})
    with pytest.raises(DataError, match="ddti-one"):
        ThyroidDataset(source, None, (16, 16), LabelSpace("acr"))
    assert source.loads == 0
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


def test_prepare_image_is_the_dataset_mapping_and_reports_where_the_image_landed() -> None:
    # The one image -> network-input function: the dataset's items are exactly its output, and the placement
    # it reports (resized size, leading padding) is where the non-zero content sits.
    items = {"wide": blob_item(shape=(30, 75), top=5, left=20, height=12, width=30)}
    ds = ThyroidDataset(ToySource(items), None, (40, 40), LabelSpace("acr"))
    sample = ToySource(items)[0]
    image, mask, placement = prepare_image(sample.image, sample.mask, (40, 40))
    assert image.dtype == torch.uint8 and mask is not None and mask.dtype == torch.uint8
    assert torch.equal(image.float() / 255.0, ds[0]["image"]) and torch.equal(mask.float(), ds[0]["mask"])
    assert placement.resized_shape == fit_size((30, 75), (40, 40)) == (16, 40)
    assert placement.pad == (12, 0)  # (40 - 16) // 2 rows above, none at the sides
    rows = np.flatnonzero(image[0].numpy().any(axis=1))
    assert rows.min() == 12 and rows.max() == 12 + 16 - 1
    _, no_mask, _ = prepare_image(sample.image, None, (40, 40))
    assert no_mask is None
    with pytest.raises(ValueError, match="2D grey"):
        prepare_image(np.zeros((3, 4, 5), np.float32), None, (40, 40))


def test_mask_key_reads_extras() -> None:
    alt = np.zeros((48, 64), dtype=bool)
    alt[30:40, 40:60] = True
    items = {"a": blob_item(extras={"reader_1": alt, "ground_truth_params": {"x": 1}})}
    ds = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"), mask_key="reader_1")
    np.testing.assert_array_equal(ds[0]["mask"][0].numpy().astype(bool), alt)
    # A wrong mask_key is a setting, not a bad image: it raises (at construction when caching, else on access).
    with pytest.raises(DataError, match="reader_9"):
        ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"), mask_key="reader_9")
    lazy = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"), mask_key="reader_9",
                          cache_in_memory=False)
    with pytest.raises(DataError, match="reader_9"):
        lazy[0]


def test_undecodable_images_are_dropped_at_construction_with_reason() -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.float32)
    items = {"good": blob_item(tirads="TR4"), "broken": (None, None, "TR2", "acr", {}),
             "colour": (rgb, None, "TR2", "acr", {}), "ok2": blob_item(tirads="TR1")}
    ds = ThyroidDataset(ToySource(items), None, (16, 16), LabelSpace("acr"))
    assert ds.image_ids == ["good", "ok2"] and len(ds) == 2
    assert ds.labels.tolist() == [3, 0]  # labels, infos and pixels stay aligned after the drop
    assert [s.item for s in ds.skipped] == ["broken", "colour"]
    assert "corrupt" in ds.skipped[0].reason and "2D grey" in ds.skipped[1].reason
    assert [ds[i]["image_id"] for i in range(2)] == ["good", "ok2"]
    # Lazy decoding cannot know at construction: the failure surfaces on access, naming the image.
    lazy = ThyroidDataset(ToySource(items), None, (16, 16), LabelSpace("acr"), cache_in_memory=False)
    assert lazy.skipped == [] and len(lazy) == 4
    with pytest.raises(DataError, match="broken"):
        lazy[1]
    with pytest.raises(DataError, match="none of the 1 images"):
        ThyroidDataset(ToySource({"broken": items["broken"]}), None, (16, 16), LabelSpace("acr"))


def test_cache_decodes_once_into_uint8_and_never_again() -> None:
    src = ToySource({"a": blob_item(), "b": blob_item()})
    ds = ThyroidDataset(src, None, (16, 16), LabelSpace("acr"), augment=True)
    assert src.loads == 2  # decoded at construction
    images, masks = ds.cached_images, ds.cached_masks
    assert images is not None and images.dtype == torch.uint8 and images.shape == (2, 1, 16, 16)
    assert masks is not None and masks.dtype == torch.uint8 and set(masks.unique().tolist()) <= {0, 1}
    for epoch in range(3):
        ds.set_epoch(epoch)
        ds.collate_fn([ds[i] for i in range(len(ds))])
    assert src.loads == 2
    src2 = ToySource({"a": blob_item()})
    ds2 = ThyroidDataset(src2, None, (16, 16), LabelSpace("acr"), cache_in_memory=False)
    ds2[0], ds2[0]
    assert src2.loads == 2
    # Cached and lazy items are identical (both quantised to 8 bits), so results never depend on caching.
    cached = ThyroidDataset(ToySource({"a": blob_item()}), None, (16, 16), LabelSpace("acr"))
    assert torch.equal(cached[0]["image"], ds2[0]["image"]) and torch.equal(cached[0]["mask"], ds2[0]["mask"])


def test_collate_fn_is_plain_collate_without_augmentation_and_items_are_never_augmented() -> None:
    items = {k: blob_item(top=5 + i) for i, k in enumerate("abc")}
    plain = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"))
    assert plain.collate_fn is collate
    aug = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"), augment=True)
    assert aug.collate_fn is not collate
    for i in range(3):
        assert torch.equal(aug[i]["image"], plain[i]["image"])
    batch = aug.collate_fn([aug[i] for i in range(3)])
    assert set(batch) == set(BATCH_KEYS)
    assert batch["image"].shape == (3, 1, 32, 32) and batch["image"].dtype == torch.float32


def _centroid(mask: torch.Tensor) -> tuple[float, float]:
    rows, cols = np.nonzero(mask[0].numpy())
    return rows.mean(), cols.mean()


def _augmented(ds: ThyroidDataset, epoch: int, order: list[int] | None = None) -> dict[str, dict]:
    """The augmented batch of ``epoch`` (items in ``order``), as image_id -> {"image", "mask"}."""
    ds.set_epoch(epoch)
    order = list(range(len(ds))) if order is None else order
    batch = ds.collate_fn([ds[i] for i in order])
    return {image_id: {"image": batch["image"][k], "mask": batch["mask"][k]}
            for k, image_id in enumerate(batch["image_id"])}


def test_augmentation_keeps_image_and_mask_aligned_and_never_flips_vertically() -> None:
    # Nodule in the top-left quadrant of a 48 x 64 frame: a left-right flip moves it right, a vertical flip
    # would move it to the bottom (forbidden), rotation/scale move it only a little.
    items = {"a": blob_item(shape=(48, 64), top=6, left=8, height=14, width=10)}
    ds = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"), augment=True, seed=3)
    plain = ThyroidDataset(ToySource(items), None, (48, 64), LabelSpace("acr"))[0]
    changed, flipped, left = 0, 0, 0
    for epoch in range(24):
        item = _augmented(ds, epoch)["a"]
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

    def run(seed: int, order: list[int], epoch: int = 0) -> dict[str, dict]:
        ds = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"), augment=True, seed=seed)
        return _augmented(ds, epoch, order)

    first = run(0, [0, 1, 2, 3])
    again = run(0, [3, 1, 2, 0])  # batch order does not matter
    split = {**run(0, [0, 2]), **run(0, [3, 1])}  # nor does the batch composition (worker layout)
    other_seed = run(1, [0, 1, 2, 3])
    other_epoch = run(0, [0, 1, 2, 3], epoch=1)
    for k in "abcd":
        for other in (again, split):
            assert torch.equal(first[k]["image"], other[k]["image"])
            assert torch.equal(first[k]["mask"], other[k]["mask"])
    assert any(not torch.equal(first[k]["image"], other_seed[k]["image"]) for k in "abcd")
    assert any(not torch.equal(first[k]["image"], other_epoch[k]["image"]) for k in "abcd")
    # Without augmentation, items are exactly reproducible across visits.
    ds = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"))
    assert torch.equal(ds[1]["image"], ds[1]["image"])


def test_augmented_batches_do_not_depend_on_dataloader_workers() -> None:
    items = {k: blob_item(top=4 + i, left=6 + i) for i, k in enumerate("abcdef")}
    ds = ThyroidDataset(ToySource(items), None, (32, 32), LabelSpace("acr"), augment=True, seed=7)
    ds.set_epoch(2)

    def batches(workers: int) -> list[dict]:
        loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=ds.collate_fn, num_workers=workers)
        return list(loader)

    for b0, b2 in zip(batches(0), batches(2), strict=True):
        assert b0["image_id"] == b2["image_id"]
        assert torch.equal(b0["image"], b2["image"]) and torch.equal(b0["mask"], b2["mask"])


def _elongation(mask: torch.Tensor) -> float:
    """sqrt of the ratio of the principal second moments: the length/width ratio, whatever the rotation."""
    rows, cols = np.nonzero(mask[0].numpy())
    eigen = np.linalg.eigvalsh(np.cov(np.stack([rows, cols]).astype(float)))
    return float(np.sqrt(eigen[1] / eigen[0]))


def test_augmentation_scales_isotropically() -> None:
    # A 60 x 30 taller-than-wide nodule: rotation and isotropic scaling keep its 2:1 elongation; per-axis
    # scale factors in 0.9-1.1 would move it anywhere between about 1.6 and 2.4. Rounding the outline to pixels
    # alone moves the ratio by up to ~0.08 here (one pixel of a 27-33 pixel width is 3-4%; 0.12 at 30 x 15).
    items = {"a": blob_item(shape=(128, 128), top=34, left=49, height=60, width=30)}
    ds = ThyroidDataset(ToySource(items), None, (128, 128), LabelSpace("acr"), augment=True, seed=5)
    plain = ThyroidDataset(ToySource(items), None, (128, 128), LabelSpace("acr"))[0]
    assert _elongation(plain["mask"]) == pytest.approx(2.0, abs=0.03)
    ratios = [_elongation(_augmented(ds, epoch)["a"]["mask"]) for epoch in range(20)]
    assert max(abs(r - 2.0) for r in ratios) < 0.1, ratios
    assert len({round(r, 6) for r in ratios}) > 5  # the affine really varies


def test_augmentation_on_a_non_square_frame_does_not_shear() -> None:
    # A square 16 x 16 nodule in a 40 x 80 frame: rotation written in normalised coordinates would shear it into
    # a rhombus (elongation != 1); in pixel geometry it stays square.
    items = {"a": blob_item(shape=(40, 80), top=12, left=32, height=16, width=16)}
    ds = ThyroidDataset(ToySource(items), None, (40, 80), LabelSpace("acr"), augment=True, seed=1,
                        augmentation={"affine_prob": 1.0, "max_rotation_deg": 30.0, "scale_range": (1.0, 1.0)})
    for epoch in range(8):
        mask = _augmented(ds, epoch)["a"]["mask"]
        assert _elongation(mask) == pytest.approx(1.0, abs=0.08)
        assert float(mask.sum()) == pytest.approx(256, rel=0.08)


def test_bad_augmentation_option_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.augmentation\.gamma_prob"):
        ThyroidDataset(ToySource({"a": blob_item()}), None, (16, 16), LabelSpace("acr"), augment=True,
                       augmentation={"gamma_prob": 1.5})
