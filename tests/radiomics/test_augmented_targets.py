"""Radiomics targets that follow the augmentation: they agree with the input the network sees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from rlar.data.augment import AugmentOptions, BatchAugmenter
from rlar.data.dataset import ThyroidDataset, collate
from rlar.data.sources import open_source
from rlar.errors import DataError
from rlar.radiomics import FEATURE_NAMES, AugmentedTargets, Standardiser, extract_features


def _features(image: torch.Tensor, mask: torch.Tensor) -> np.ndarray | None:
    try:
        return extract_features(image[0].double().numpy(), mask[0].numpy() > 0.5)
    except DataError:
        return None


@pytest.fixture(scope="module")
def network_inputs() -> tuple[dict[str, Any], pd.DataFrame, Standardiser]:
    """Phantom images at the network size, with targets computed on exactly those inputs (so that the shifted
    target can be compared with the features of the augmented input itself)."""
    source = open_source("phantom", None, n_cases=24, image_size=(192, 192), seed=3)
    ids = [info.image_id for info in source.infos if info.has_mask]
    ds = ThyroidDataset(source, ids, image_size=(128, 128))
    batch = collate([ds[i] for i in range(len(ds))])
    rows = {batch["image_id"][i]: f for i in range(len(ds))
            if (f := _features(batch["image"][i], batch["mask"][i])) is not None}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(FEATURE_NAMES))
    standardiser = Standardiser().fit(frame)
    standardised = standardiser.transform(frame)
    keep = [i for i, image_id in enumerate(batch["image_id"]) if image_id in rows]
    batch = {k: (v[keep] if isinstance(v, torch.Tensor) else [v[i] for i in keep]) for k, v in batch.items()}
    batch["radiomics"] = torch.tensor(standardised.loc[batch["image_id"]].to_numpy(), dtype=torch.float32)
    batch["has_radiomics"] = torch.ones(len(keep), dtype=torch.bool)
    return batch, frame, standardiser


def test_shifted_targets_are_the_features_of_the_augmented_input(network_inputs: Any) -> None:
    batch, _, standardiser = network_inputs
    retarget = AugmentedTargets(standardiser)
    mean, std = np.asarray(standardiser.mean), np.asarray(standardiser.std)
    checked = moved = 0
    for epoch in range(2):
        after = BatchAugmenter(AugmentOptions(), seed=1)(batch, epoch)
        out = retarget(batch, after)
        for i in range(len(batch["image_id"])):
            direct = _features(after["image"][i], after["mask"][i])
            if direct is None:  # nodule not measurable after augmentation: the target is switched off
                assert not bool(out["has_radiomics"][i])
                continue
            assert bool(out["has_radiomics"][i])
            np.testing.assert_allclose(out["radiomics"][i].double().numpy(), (direct - mean) / std, atol=1e-4)
            checked += 1
            moved += bool(np.max(np.abs(out["radiomics"][i].numpy() - batch["radiomics"][i].numpy())) > 0.1)
    assert checked > 20
    assert moved > checked // 2  # the augmentation really moved most targets: keeping them would be wrong


def test_a_flip_keeps_the_target(network_inputs: Any) -> None:
    batch, _, standardiser = network_inputs
    only_flip = AugmentOptions(flip_prob=1.0, affine_prob=0.0, brightness_prob=0.0, gamma_prob=0.0, speckle_prob=0.0)
    after = BatchAugmenter(only_flip, seed=0)(batch, 0)
    out = AugmentedTargets(standardiser)(batch, after)
    assert torch.equal(out["has_radiomics"], batch["has_radiomics"])
    torch.testing.assert_close(out["radiomics"], batch["radiomics"], atol=1e-5, rtol=0)


def test_the_dataset_refuses_augmented_targets_without_the_shift() -> None:
    source = open_source("phantom", None, n_cases=4, image_size=(64, 64), seed=0)
    ids = [info.image_id for info in source.infos if info.has_mask]
    targets = pd.DataFrame(np.zeros((len(ids), len(FEATURE_NAMES))), index=ids, columns=list(FEATURE_NAMES))
    with pytest.raises(ValueError, match="retarget"):
        ThyroidDataset(source, ids, image_size=(64, 64), radiomics=targets, augment=True)
    # other policies need no shift; so does a dataset without targets
    ThyroidDataset(source, ids, image_size=(64, 64), radiomics=targets, augment=True,
                   augmentation={"targets": "split"})
    ThyroidDataset(source, ids, image_size=(64, 64), augment=True)
