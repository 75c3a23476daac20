"""The descriptor-alignment check: oriented AUROC, patient bootstrap, the table, and the h_tirads read-out path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlar.radiomics import FEATURE_NAMES
from rlar.radiomics.alignment import (
    CONTRASTS,
    Contrast,
    alignment_table,
    format_table,
    oriented_auroc,
    patient_bootstrap_ci,
)
from tests._benchmarks import load_benchmark
from tests.radiomics.conftest import SceneFactory

REPO = Path(__file__).resolve().parents[2]


# --- orientation ---------------------------------------------------------------------------------------------------
def test_auroc_is_oriented_by_the_expected_direction() -> None:
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    x = np.array([5.0, 6.0, 7.0, 1.0, 2.0, 3.0])  # positives higher
    assert oriented_auroc(y, x, +1) == 1.0  # expected higher and it is: perfect agreement
    assert oriented_auroc(y, x, -1) == 0.0  # expected lower but it is higher: perfectly the wrong way round
    assert oriented_auroc(y, -x, -1) == 1.0
    assert oriented_auroc(y, np.ones(6), +1) == 0.5  # constant feature: no information
    # one inversion out of 9 pairs, one tie counts half
    assert oriented_auroc(y, np.array([5.0, 6.0, 2.0, 1.0, 2.0, 3.0]), +1) == pytest.approx((7 + 0.5) / 9)
    assert np.isnan(oriented_auroc(np.ones(3, bool), np.arange(3.0), 1))  # one group empty


def test_rank_auroc_equals_sklearn_with_ties() -> None:
    from rlar.radiomics.alignment import _rank_auroc

    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    x = rng.integers(0, 6, 200).astype(float)  # many ties
    assert _rank_auroc(y, -x) == pytest.approx(oriented_auroc(y, x, -1), abs=1e-12)


def test_contrasts_are_checked() -> None:
    with pytest.raises(KeyError):
        Contrast("no_such_feature", "margin", ("ill_defined",), ("smooth",), 1)
    with pytest.raises(ValueError, match="disjoint"):
        Contrast("solidity", "margin", ("smooth",), ("smooth",), -1)
    with pytest.raises(ValueError, match="disjoint"):
        Contrast("solidity", "margin", ("not_a_margin",), ("smooth",), -1)
    with pytest.raises(ValueError, match="direction"):
        Contrast("solidity", "margin", ("ill_defined",), ("smooth",), 0)
    names = {(c.feature, c.descriptor) for c in CONTRASTS}
    assert {("cystic_fraction", "composition"), ("echo_ratio", "echogenicity"), ("margin_irregularity", "margin"),
            ("margin_sharpness", "margin"), ("bright_focus_fraction", "echogenic_foci"),
            ("taller_than_wide", "shape")} <= names


# --- bootstrap -----------------------------------------------------------------------------------------------------
def _toy(n_patients: int, copies: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n_patients) % 2 == 0
    x = rng.normal(size=n_patients) + 0.8 * y
    patients = np.array([f"p{k}" for k in range(n_patients)])
    return np.repeat(y, copies), np.repeat(x, copies), np.repeat(patients, copies)


def test_bootstrap_resamples_patients_not_images() -> None:
    # Five identical images per patient carry no more information than one: resampling patients gives exactly
    # the CI of one image per patient (the same draws of patients, the same AUROC per draw).
    one = patient_bootstrap_ci(*_toy(30, 1)[:2], _toy(30, 1)[2], +1, n_boot=300, seed=3)
    five = patient_bootstrap_ci(*_toy(30, 5)[:2], _toy(30, 5)[2], +1, n_boot=300, seed=3)
    assert five == pytest.approx(one, abs=1e-12)
    # ...whereas resampling the 150 images as if independent would give a narrower, overconfident interval
    y, x, _ = _toy(30, 5)
    per_image = patient_bootstrap_ci(y, x, np.arange(len(y)).astype(str), +1, n_boot=300, seed=3)
    assert per_image[1] - per_image[0] < 0.7 * (five[1] - five[0])


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded() -> None:
    y, x, p = _toy(60, 2, seed=1)
    low, high = patient_bootstrap_ci(y, x, p, +1, n_boot=400, seed=0)
    assert 0.0 <= low < oriented_auroc(y, x, +1) < high <= 1.0
    assert patient_bootstrap_ci(y, x, p, +1, n_boot=400, seed=0) == (low, high)
    # reversing the expected direction mirrors the interval around 0.5
    mirrored = patient_bootstrap_ci(y, x, p, -1, n_boot=400, seed=0)
    assert mirrored == pytest.approx((1 - high, 1 - low), abs=1e-12)


def test_paired_difference_of_a_feature_with_itself_is_zero_and_a_better_one_wins() -> None:
    from rlar.radiomics.alignment import paired_difference_ci

    y, x, p = _toy(80, 1, seed=2)
    assert paired_difference_ci(y, x, x, p, +1, n_boot=200) == (0.0, 0.0, 0.0)
    better = np.where(y, x + 3.0, x)  # separates the groups perfectly
    diff, low, high = paired_difference_ci(y, x, better, p, +1, n_boot=200)
    assert diff == pytest.approx(1.0 - oriented_auroc(y, x, +1)) and 0 < low <= diff <= high


# --- the table -----------------------------------------------------------------------------------------------------
def test_alignment_table_counts_groups_and_reports_missing_labels() -> None:
    ids = [f"img{k}" for k in range(8)]
    features = pd.DataFrame(0.0, index=ids, columns=list(FEATURE_NAMES))
    features["margin_irregularity"] = [0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.5, 0.5]
    margins = ["ill_defined", "lobulated_irregular", "ill_defined", "smooth", "smooth", "smooth", None, "smooth"]
    descriptors = {i: {"margin": m} for i, m in zip(ids, margins, strict=True)}
    patients = {i: f"p{k // 2}" for k, i in enumerate(ids)}
    contrasts = [Contrast("margin_irregularity", "margin", ("ill_defined", "lobulated_irregular"), ("smooth",), 1),
                 Contrast("taller_than_wide", "shape", ("taller_than_wide",), ("wider_than_tall",), 1)]
    table = alignment_table(features, descriptors, patients, contrasts, n_boot=50)
    margin, shape = table.iloc[0], table.iloc[1]
    assert (margin.n_pos, margin.n_neg) == (3, 4)  # the unlabelled image is left out
    assert (margin.patients_pos, margin.patients_neg) == (2, 3)  # p1 has one image in each group
    assert margin.auroc == pytest.approx(1.0) and margin.direction == "higher"
    assert shape.n_pos == shape.n_neg == 0 and np.isnan(shape.auroc)
    text = format_table(table, "toy")
    assert "no labels" in text and "| 1.000 |" in text and text.startswith("**toy**")


# --- the h_tirads read-out on a tiny phantom-trained model ---------------------------------------------------------
# (trained_run: the session's model, a fixture of tests/conftest.py)
def test_readout_predicts_the_held_out_fold_in_feature_units(trained_run: Path) -> None:
    import torch

    from rlar.data.splits import load_splits
    from rlar.inference.loading import load_trained_model
    from rlar.inference.readout import readout_features
    from rlar.radiomics import Standardiser

    readout = readout_features([trained_run])
    trained = load_trained_model(trained_run)
    fold = int(trained.checkpoint.get("fold", trained.config.data.fold))
    test_ids = load_splits(trained_run / "splits.json")[fold]["test"]
    assert sorted(readout.features.index) == sorted(test_ids)  # exactly the held-out test images
    assert list(readout.features.columns) == list(FEATURE_NAMES)
    assert set(readout.descriptors) == set(test_ids) and readout.patients[test_ids[0]].startswith("phantom-")

    # one image by hand: the network's h_tirads on the training preprocessing, times std plus mean
    from rlar.data.dataset import ThyroidDataset

    source = readout.source
    item = ThyroidDataset(source, [test_ids[0]], image_size=trained.prep.image_size)[0]
    with torch.inference_mode():
        h = trained.model(item["image"][None]).h_tirads[0].double().numpy()
    if trained.config.prediction.tta:
        with torch.inference_mode():
            h = (h + trained.model(item["image"][None].flip(-1)).h_tirads[0].double().numpy()) / 2
    std = Standardiser.from_state_dict(trained.checkpoint["standardiser"])
    expected = std.inverse_transform(pd.DataFrame(h[None], columns=list(FEATURE_NAMES))).iloc[0].to_numpy()
    np.testing.assert_allclose(readout.features.loc[test_ids[0]].to_numpy(), expected, rtol=1e-5, atol=1e-6)

    table = alignment_table(readout.features, readout.descriptors, readout.patients, n_boot=20)
    assert len(table) == len(CONTRASTS) and np.isfinite(table.auroc).any()


def test_readout_pools_runs_and_refuses_an_unguided_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    import torch

    from rlar.errors import DataError
    from rlar.inference.readout import readout_features
    from rlar.training.checkpoint import load_checkpoint

    once = readout_features([trained_run]).features
    twice = readout_features([trained_run, trained_run])  # the same images held out twice: mean = the read-out
    pd.testing.assert_frame_equal(twice.features.sort_index(), once.sort_index())
    assert len(twice.runs) == 2

    copy = tmp_path / "unguided"
    shutil.copytree(trained_run, copy)
    (copy / "metrics.json").unlink(missing_ok=True)  # it names the original checkpoint by its absolute path
    for name in ("best.pt", "last.pt"):
        file = copy / "checkpoints" / name
        if file.is_file():
            state = load_checkpoint(file, map_location="cpu")
            state.pop("standardiser", None)
            torch.save(state, file)
    with pytest.raises(DataError, match="without guidance"):
        readout_features([copy])
    with pytest.raises(DataError, match="no run"):
        readout_features([tmp_path / "nothing_here"])


def test_benchmark_prints_three_groups_for_a_run(trained_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    module = _benchmark_module()
    out = tmp_path / "table.md"
    rc = module.main(["--run", str(trained_run), "--no-true-masks", "--n-boot", "20", "--cache-dir",
                      str(tmp_path / "cache"), "--out", str(out), "--csv", str(tmp_path / "rows.csv")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "true masks, the same" in printed and "h_tirads read-out" in printed
    assert out.read_text().strip() == printed.strip()
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert rows.group.nunique() == 2 and len(rows) == 2 * len(CONTRASTS)


def _benchmark_module():
    return load_benchmark("descriptor_alignment")


def test_adopted_candidate_is_the_feature(make_scene: SceneFactory) -> None:
    # The benchmark's candidate "sharp_normal_ring" is the v2 margin_sharpness; every candidate is finite.
    from rlar.radiomics import extract_features

    image, mask = make_scene(4, noise=0.06)
    values = _benchmark_module().candidate_values(image, mask)
    assert set(values) == set(_benchmark_module().CANDIDATES) and all(np.isfinite(list(values.values())))
    ours = dict(zip(FEATURE_NAMES, extract_features(image, mask), strict=True))
    assert values["sharp_normal_ring"] == pytest.approx(ours["margin_sharpness"], abs=1e-12)


# --- DDTI (skipped when the development copy is absent) ------------------------------------------------------------
@pytest.mark.ddti
def test_ddti_descriptors_reach_the_table(ddti_root: Path) -> None:
    from rlar.data.sources import open_source

    source = open_source("ddti", ddti_root)
    descriptors = {i.image_id: i.descriptors for i in source.infos}
    labelled = {name: sum(d.get(name) is not None for d in descriptors.values())
                for name in ("composition", "echogenicity", "margin", "echogenic_foci", "shape")}
    # 200-300 labelled images per ACR descriptor, none for shape (DDTI has no shape descriptor)
    assert all(200 <= labelled[n] <= 400 for n in ("composition", "echogenicity", "margin", "echogenic_foci"))
    assert labelled["shape"] == 0
