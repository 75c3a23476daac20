"""Batch augmentation: option validation, exact geometry, bit-exact pass-through, radiomics-target policies, and
agreement between the kept radiomics targets and the augmented images (phantom, shipped defaults)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from rlar.data.augment import (
    TARGET_TOLERANCE_SD,
    AugmentOptions,
    BatchAugmenter,
    apply_affine,
    sample_seed,
    validate_augment_options,
)
from rlar.data.dataset import ThyroidDataset, collate
from rlar.data.sources import open_source
from rlar.errors import ConfigError, DataError
from rlar.radiomics import extract_features

OFF: dict[str, Any] = {"flip_prob": 0.0, "affine_prob": 0.0, "brightness_prob": 0.0, "contrast_prob": 0.0,
                       "gamma_prob": 0.0, "speckle_prob": 0.0}


def make_batch(n: int = 8, size: tuple[int, int] = (24, 32), targets: bool = True, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((n, 1, *size), generator=g)
    image[..., :, :3] = 0.0  # a black band like the padding outside the fan
    mask = torch.zeros((n, 1, *size))
    mask[..., 6:14, 10:20] = 1.0
    return {
        "image": image, "mask": mask, "has_mask": torch.ones(n, dtype=torch.bool),
        "label": torch.zeros(n, dtype=torch.int64), "radiomics": torch.randn((n, 13), generator=g),
        "has_radiomics": torch.full((n,), targets, dtype=torch.bool),
        "image_id": [f"img{i}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)],
    }


def test_options_validation_names_the_key() -> None:
    assert validate_augment_options(None) == AugmentOptions()
    for raw, key in (
        ({"flip_prob": 1.5}, "data.augmentation.flip_prob"),
        ({"flipprob": 0.5}, "data.augmentation.flipprob"),
        ({"gamma_range": (1.2, 0.8)}, "data.augmentation.gamma_range"),
        ({"targets": "sometimes"}, "data.augmentation.targets"),
    ):
        with pytest.raises(ConfigError) as err:
            validate_augment_options(raw)
        assert err.value.key == key, err.value


def test_sample_seed_depends_on_seed_epoch_id_and_occurrence_only() -> None:
    base = sample_seed(0, 1, "a")
    assert base == sample_seed(0, 1, "a")
    assert len({base, sample_seed(1, 1, "a"), sample_seed(0, 2, "a"), sample_seed(0, 1, "b"),
                sample_seed(0, 1, "a", 1)}) == 5


def test_everything_off_passes_the_batch_through_bit_exactly() -> None:
    batch = make_batch()
    out = BatchAugmenter(AugmentOptions(**OFF), seed=3)(batch, epoch=4)
    assert torch.equal(out["image"], batch["image"]) and torch.equal(out["mask"], batch["mask"])
    assert torch.equal(out["has_radiomics"], batch["has_radiomics"])
    assert out["image_id"] == batch["image_id"] and out["radiomics"] is batch["radiomics"]


def test_a_duplicated_image_in_one_batch_gets_its_own_draw() -> None:
    batch = collate([{k: v[i] if k not in ("image_id", "patient_id") else "same" for k, v in make_batch(2).items()}
                     for i in (0, 0)])
    out = BatchAugmenter(AugmentOptions(targets="ignore", affine_prob=1.0), seed=0)(batch, epoch=0)
    assert not torch.equal(out["image"][0], out["image"][1])


def test_rotation_by_90_degrees_equals_rot90_and_integer_shift_is_exact() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand((1, 1, 16, 16), generator=g)
    mask = (image > 0.5).float()
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    rotated, rotated_mask = apply_affine(image, mask, torch.tensor([True]), one * math.pi / 2, one, zero, zero)
    matches = [k for k in (1, -1) if torch.allclose(rotated, torch.rot90(image, k, dims=(2, 3)), atol=1e-5)]
    assert len(matches) == 1
    assert torch.equal(rotated_mask, torch.rot90(mask, matches[0], dims=(2, 3)))
    # tx = 0.25 of a 16-pixel side: content moves 4 pixels right, zeros enter on the left.
    shifted, _ = apply_affine(image, mask, torch.tensor([True]), zero, one, one * 0.25, zero)
    assert torch.allclose(shifted[..., 4:], image[..., :-4], atol=1e-5)
    assert torch.all(shifted[..., :4] == 0)


def test_affine_keeps_a_square_square_on_a_wide_frame() -> None:
    mask = torch.zeros((1, 1, 40, 80))
    mask[..., 12:28, 32:48] = 1.0
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    _, out = apply_affine(mask.clone(), mask, torch.tensor([True]), one * math.pi / 4, one, zero, zero)
    rows, cols = torch.nonzero(out[0, 0], as_tuple=True)
    # A 45-degree square is a diamond as tall as it is wide (a shear would make it a rhombus of unequal extent).
    height, width = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
    assert abs(height - width) <= 1 and abs(height - 16 * math.sqrt(2)) <= 2


def test_intensity_transforms_stay_in_range_and_speckle_keeps_black_black() -> None:
    batch = make_batch(16)
    options = AugmentOptions(**{**OFF, "brightness_prob": 1.0, "gamma_prob": 1.0, "speckle_prob": 1.0,
                                "contrast_prob": 1.0}, targets="ignore")
    out = BatchAugmenter(options, seed=0)(batch, epoch=0)
    assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0
    assert not torch.equal(out["image"], batch["image"])
    assert torch.equal(out["mask"], batch["mask"])  # intensity never touches the mask
    speckle_only = AugmentOptions(**{**OFF, "speckle_prob": 1.0}, targets="ignore")
    noisy = BatchAugmenter(speckle_only, seed=0)(batch, epoch=0)["image"]
    assert torch.all(noisy[..., :, :3] == 0)  # multiplicative: the black band stays black
    bright = AugmentOptions(**{**OFF, "brightness_prob": 1.0}, targets="ignore")
    shift = (BatchAugmenter(bright, seed=0)(batch, epoch=0)["image"] - batch["image"])[..., 3:]
    inside = (batch["image"][..., 3:] > 0.06) & (batch["image"][..., 3:] < 0.94)  # away from the clamp
    assert float(shift[inside].abs().max()) <= 0.05 + 1e-6


def _is_original_or_flipped(out: torch.Tensor, original: torch.Tensor) -> bool:
    return torch.equal(out, original) or torch.equal(out, original.flip(-1))


@pytest.mark.parametrize("policy", ["split", "restrict", "ignore"])
def test_target_policies(policy: str) -> None:
    n = 400
    batch = make_batch(n)
    batch["has_radiomics"][n // 2 :] = False  # half the samples carry no target
    out = BatchAugmenter(AugmentOptions(targets=policy), seed=0)(batch, epoch=0)  # type: ignore[arg-type]
    kept = out["has_radiomics"]
    assert not torch.any(kept[n // 2 :])  # a target never appears
    untargeted_changed = sum(
        not _is_original_or_flipped(out["image"][i], batch["image"][i]) for i in range(n // 2, n)
    )
    assert untargeted_changed > 0.8 * (n // 2)  # samples without a target get the full augmentation
    if policy == "ignore":
        assert torch.equal(kept, batch["has_radiomics"])
        return
    for i in torch.nonzero(kept).flatten().tolist():  # every kept target: only target-preserving transforms
        assert _is_original_or_flipped(out["image"][i], batch["image"][i])
        assert _is_original_or_flipped(out["mask"][i], batch["mask"][i])
    share = float(kept[: n // 2].float().mean())
    if policy == "restrict":
        assert share == 1.0
    else:  # 0.5 safe + 0.5 * P(no target-changing transform is drawn) = 0.5 + 0.5 * 0.2 * 0.5**3
        assert 0.42 < share < 0.60, share


@pytest.fixture(scope="module")
def phantom_batch() -> dict[str, Any]:
    source = open_source("phantom", None, n_cases=24, image_size=(192, 192), seed=3)
    ids = [info.image_id for info in source.infos if info.has_mask]
    ds = ThyroidDataset(source, ids, image_size=(128, 128))
    batch = collate([ds[i] for i in range(len(ds))])
    batch["has_radiomics"] = torch.ones(len(ds), dtype=torch.bool)
    return batch


def _features(image: torch.Tensor, mask: torch.Tensor) -> np.ndarray | None:
    try:
        return extract_features(image[0].double().numpy(), mask[0].numpy() > 0.5)
    except DataError:
        return None


def test_split_policy_keeps_only_targets_that_agree_with_the_augmented_image(phantom_batch: dict) -> None:
    """Under 'split' the guidance loss only sees targets whose 13 features match the augmented input."""
    base = {i: f for i in range(len(phantom_batch["image_id"]))
            if (f := _features(phantom_batch["image"][i], phantom_batch["mask"][i])) is not None}
    assert len(base) >= 16
    sd = np.std(np.stack(list(base.values())), axis=0, ddof=1)
    kept_deltas: list[float] = []
    dropped_deltas: list[float] = []
    for epoch in range(3):
        out = BatchAugmenter(AugmentOptions(targets="split"), seed=0)(phantom_batch, epoch)
        for i, f0 in base.items():
            f = _features(out["image"][i], out["mask"][i])
            if f is None:
                continue
            (kept_deltas if bool(out["has_radiomics"][i]) else dropped_deltas).append(np.abs(f - f0) / sd)
    assert len(kept_deltas) > 10 and len(dropped_deltas) > 10
    assert float(np.max(kept_deltas)) <= TARGET_TOLERANCE_SD
    # Why the policy exists: the samples it takes the target from have features that really moved.
    assert float(np.median(np.max(np.stack(dropped_deltas), axis=1))) > 0.1


def test_every_method_sees_the_same_augmentation_for_a_seed() -> None:
    """A guided method (every sample carries a radiomics target) and an unguided one (none does) get the same
    augmented images and masks from one seed under the shipped policy: arms differ only by the method."""
    n = 64
    guided, unguided = make_batch(n), make_batch(n)
    guided["has_radiomics"][:] = True
    unguided["has_radiomics"][:] = False
    assert AugmentOptions().targets == "augmented"
    for epoch in range(3):
        a = BatchAugmenter(AugmentOptions(), seed=5)(guided, epoch)
        b = BatchAugmenter(AugmentOptions(), seed=5)(unguided, epoch)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        changed = sum(not _is_original_or_flipped(a["image"][i], guided["image"][i]) for i in range(n))
        assert changed > 0.8 * n  # the full augmentation, not the flip-only half of the 'split' policy
        assert torch.equal(a["has_radiomics"], guided["has_radiomics"])  # targets are the retarget step's job
