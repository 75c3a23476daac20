from collections import Counter

import pytest

from rlar.data.labels import LabelSpace
from rlar.data.record import SampleInfo
from rlar.data.splits import check_splits, load_splits, make_splits, save_splits
from rlar.errors import DataError


def _infos(n_patients: int = 30, images_per_patient: int = 2) -> list[SampleInfo]:
    levels = ["2", "3", "4a", "4b", "4c", "5", None]
    return [
        SampleInfo(image_id=f"{p}_{k}", patient_id=f"p{p}", source="t", tirads=levels[p % 7], scale="ddti")
        for p in range(n_patients)
        for k in range(images_per_patient)
    ]


def test_folds_partition_images_and_keep_patients_together():
    infos = _infos()
    folds = make_splits(infos, n_folds=5, seed=3, label_space=LabelSpace("ddti"))
    assert len(folds) == 5
    all_val = [i for f in folds for i in f["val"]]
    assert sorted(all_val) == sorted(i.image_id for i in infos)  # each image validated exactly once
    check_splits(folds, infos)
    for fold in folds:
        val_patients = {i.split("_")[0] for i in fold["val"]}
        train_patients = {i.split("_")[0] for i in fold["train"]}
        assert not val_patients & train_patients


def test_stratification_spreads_levels():
    infos = _infos(n_patients=70)
    folds = make_splits(infos, n_folds=5, seed=0)
    level_of = {i.image_id: i.tirads for i in infos}
    for fold in folds:
        counts = Counter(level_of[i] for i in fold["val"])
        assert set(counts) == {"2", "3", "4a", "4b", "4c", "5", None}


def test_seeded_and_deterministic():
    infos = _infos()
    assert make_splits(infos, seed=1) == make_splits(infos, seed=1)
    assert make_splits(infos, seed=1) != make_splits(infos, seed=2)


def test_check_refuses_patient_on_both_sides(tmp_path):
    infos = _infos(n_patients=4)
    folds = [{"train": ["0_0", "1_0", "1_1"], "val": ["0_1", "2_0", "2_1"]}]
    with pytest.raises(DataError, match="patient 'p0' is on both sides"):
        check_splits(folds, infos)


def test_check_refuses_unknown_ids_and_roundtrips(tmp_path):
    infos = _infos(n_patients=10)
    folds = make_splits(infos, n_folds=2)
    path = tmp_path / "splits.json"
    save_splits(path, folds)
    assert load_splits(path) == folds
    folds[0]["val"].append("nope_1")
    with pytest.raises(DataError, match="not in the source"):
        check_splits(folds, infos)


def test_too_few_patients():
    with pytest.raises(DataError, match="only 2 patients"):
        make_splits(_infos(n_patients=2), n_folds=5)
