import json
import warnings
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
    # the outer folds' test sides partition the images: each image is tested exactly once (was: "val")
    all_test = [i for f in folds for i in f["test"]]
    assert sorted(all_test) == sorted(i.image_id for i in infos)
    check_splits(folds, infos)
    for fold in folds:
        patients = {side: {i.split("_")[0] for i in fold[side]} for side in ("train", "val", "test")}
        assert not patients["train"] & patients["val"]
        assert not patients["train"] & patients["test"]
        assert not patients["val"] & patients["test"]
        assert sorted(fold["train"] + fold["val"] + fold["test"]) == sorted(i.image_id for i in infos)


def test_inner_validation_is_about_val_fraction_of_the_outer_training_set():
    infos = _infos(n_patients=100, images_per_patient=1)
    for fraction, expected in ((0.2, 16), (0.25, 20), (0.5, 40)):
        folds = make_splits(infos, n_folds=5, seed=0, val_fraction=fraction)
        for fold in folds:
            assert abs(len(fold["test"]) - 20) <= 2  # stratification moves a group or two
            assert abs(len(fold["val"]) - expected) <= 3, (fraction, len(fold["val"]))


def test_stratification_spreads_levels():
    infos = _infos(n_patients=70)
    folds = make_splits(infos, n_folds=5, seed=0)
    level_of = {i.image_id: i.tirads for i in infos}
    for fold in folds:
        counts = Counter(level_of[i] for i in fold["test"])
        assert set(counts) == {"2", "3", "4a", "4b", "4c", "5", None}


def test_seeded_and_deterministic():
    infos = _infos()
    assert make_splits(infos, seed=1) == make_splits(infos, seed=1)
    assert make_splits(infos, seed=1) != make_splits(infos, seed=2)


def test_content_groups_are_kept_on_one_side():
    infos = _infos(n_patients=30, images_per_patient=1)
    # patients 0, 7 and 14 share an image: one group
    groups = {i.image_id: ("dup" if i.patient_id in ("p0", "p7", "p14") else i.patient_id) for i in infos}
    for seed in range(5):
        for fold in make_splits(infos, n_folds=5, seed=seed, groups=groups):
            sides = {side for side in ("train", "val", "test") for i in fold[side] if i in ("0_0", "7_0", "14_0")}
            assert len(sides) == 1
            check_splits([fold], infos, groups=groups)


def test_check_refuses_patient_on_both_sides():
    infos = _infos(n_patients=4)
    folds = [{"train": ["0_0", "1_0", "1_1"], "val": ["3_0", "3_1"], "test": ["0_1", "2_0", "2_1"]}]
    with pytest.raises(DataError, match="patient 'p0' is on more than one side"):
        check_splits(folds, infos)
    folds = [{"train": ["0_0", "0_1"], "val": ["1_0", "2_0"], "test": ["3_0", "3_1", "1_1"]}]
    with pytest.raises(DataError, match="patient 'p1' is on more than one side"):
        check_splits(folds, infos)


def test_check_refuses_a_content_group_on_two_sides():
    infos = _infos(n_patients=4, images_per_patient=1)
    groups = {"0_0": "p0+p3", "1_0": "p1", "2_0": "p2", "3_0": "p0+p3"}
    folds = [{"train": ["0_0"], "val": ["1_0"], "test": ["2_0", "3_0"]}]
    check_splits(folds, infos)  # fine by patient
    with pytest.raises(DataError, match="group .*'p0\\+p3'"):
        check_splits(folds, infos, groups=groups)


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


def _write(tmp_path, data):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(data))
    return path


def test_split_file_with_null_side_is_a_clear_error(tmp_path):
    path = _write(tmp_path, [{"train": None, "val": ["1_0"], "test": ["2_0"]}])
    with pytest.raises(DataError, match="fold 0 'train'.*is null; expected a list of image ids") as info:
        load_splits(path)
    assert str(path) in str(info.value)


def test_split_entry_written_as_a_string_is_not_read_as_characters(tmp_path):
    path = _write(tmp_path, [{"train": ["0_0"], "val": "1_0", "test": ["2_0"]}])
    with pytest.raises(DataError, match="fold 0 'val'.*is the string '1_0'; expected a list"):
        load_splits(path)


def test_old_two_key_split_file_is_refused_with_the_reason(tmp_path):
    path = _write(tmp_path, [{"train": ["0_0"], "val": ["1_0"]}])
    with pytest.raises(DataError, match="old format.*'test'"):
        load_splits(path)


def test_split_that_leaves_most_images_out_warns():
    infos = _infos(n_patients=20, images_per_patient=1)
    folds = [{"train": ["0_0", "1_0"], "val": ["2_0"], "test": ["3_0"]}]
    with pytest.warns(UserWarning, match=r"use 4 of the source's 20 images \(20%\); 16 images are left out"):
        check_splits(folds, infos)
    full = make_splits(infos, n_folds=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_splits(full, infos)  # a complete split is silent


def test_a_fold_that_drops_images_the_other_folds_use_warns_naming_them():
    from rlar.errors import DataWarning

    infos = _infos(n_patients=20, images_per_patient=1)
    folds = make_splits(infos, n_folds=4, seed=0)
    dropped = sorted(folds[2]["train"])[:3]
    folds[2]["train"] = [i for i in folds[2]["train"] if i not in dropped]  # an editing slip in one fold only
    with pytest.warns(DataWarning) as caught:
        check_splits(folds, infos, where="splits.json")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert messages[0].startswith("splits.json: fold 2 leaves out 3 image(s) that the other folds use")
    assert all(repr(i) in messages[0] for i in dropped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_splits(make_splits(infos, n_folds=4, seed=0), infos)  # complete folds: nothing to say
