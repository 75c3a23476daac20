"""Predictor: one path from any input to mask, category, measurements and evidence (real and oracle networks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rlar.errors import DataError
from rlar.inference import Predictor
from rlar.inference.evidence import RadiomicsReference
from rlar.inference.loading import load_trained_model
from rlar.inference.predictor import PHANTOM_NOTICE
from rlar.inference.report import build_report
from rlar.radiomics import FEATURE_NAMES
from tests.inference import _rlar_trained_model
from tests.inference._dicom import write_dicom


def _nodule_image(shape: tuple[int, int] = (100, 160), box: tuple[int, int, int, int] = (30, 70, 50,
                  110)) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.clip(0.3 + 0.05 * rng.standard_normal(shape), 0, 0.45).astype(np.float32)
    top, bottom, left, right = box
    image[top:bottom, left:right] = np.clip(0.8 + 0.05 * rng.standard_normal((bottom - top, right - left)), 0.55, 1)
    return image


def test_trained_model_predicts_paths_and_arrays_alike(trained_run: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_run(trained_run)
    png = _rlar_trained_model.phantom_png(tmp_path)
    from_path, = predictor.predict([png])
    from_array, = predictor.predict(from_path.input.frames[0])
    assert from_path.class_prob is not None and from_array.class_prob is not None
    np.testing.assert_allclose(from_path.class_prob, from_array.class_prob, atol=1e-6)
    assert from_path.class_prob.sum() == pytest.approx(1.0) and len(from_path.class_names) == 5
    assert from_path.key.mask is not None and from_path.key.mask.shape == from_path.input.shape
    assert from_path.readout is not None and set(from_path.readout) == set(FEATURE_NAMES)  # guided model
    assert PHANTOM_NOTICE in from_path.warnings


def test_flip_tta_makes_predictions_mirror_equivariant(trained_run: Path) -> None:
    predictor = Predictor.from_run(trained_run, tta=True)
    image = _nodule_image((64, 64), (16, 40, 20, 50))
    plain, mirrored = predictor.predict([image, np.ascontiguousarray(image[:, ::-1])])
    assert plain.class_prob is not None and mirrored.class_prob is not None
    assert plain.key.mask_prob is not None and mirrored.key.mask_prob is not None
    np.testing.assert_allclose(plain.class_prob, mirrored.class_prob, atol=1e-5)
    np.testing.assert_allclose(plain.key.mask_prob, mirrored.key.mask_prob[:, ::-1], atol=1e-5)


def test_prediction_options_come_from_the_run_unless_given(trained_run: Path) -> None:
    from rlar.prediction import clean_mask
    from rlar.training.config import config_to_dict

    assert Predictor.from_run(trained_run).tta is False  # the run's config section `prediction`
    assert Predictor.from_run(trained_run, tta=True).provenance()["tta"] is True
    predictor = Predictor.from_run(trained_run)
    predictor.options = predictor.options.model_copy(update={"mask_postprocess": "largest"})
    image = _nodule_image((64, 64), (16, 40, 20, 50))
    result = predictor.predict(image)[0]
    assert predictor.provenance()["mask_postprocess"] == "largest"
    assert result.key.mask is not None and result.key.mask_prob is not None
    np.testing.assert_array_equal(result.key.mask, clean_mask(result.key.mask_prob > 0.5, "largest"))
    assert config_to_dict(predictor.config)["prediction"]["tta"] is False


def test_fold_models_of_an_experiment_are_ensembled(trained_run: Path, tmp_path: Path) -> None:
    experiment = tmp_path / "experiment"
    for fold in (0, 1):
        shutil.copytree(trained_run / "checkpoints", experiment / f"fold_{fold}" / "checkpoints")
    ensemble = Predictor.from_run(experiment)
    assert len(ensemble.members) == 2
    with torch.no_grad():  # make the second member a different model
        for parameter in ensemble.members[1].model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    image = _nodule_image((64, 64), (16, 40, 20, 50))
    singles = [Predictor([m]).predict(image)[0] for m in ensemble.members]
    mean, = ensemble.predict(image)
    assert mean.class_prob is not None and singles[0].class_prob is not None and singles[1].class_prob is not None
    np.testing.assert_allclose(mean.class_prob, (singles[0].class_prob + singles[1].class_prob) / 2, atol=1e-6)
    assert Predictor.from_run(experiment, folds=[1]).members[0].path.parts[-3] == "fold_1"
    with pytest.raises(DataError, match="fold"):
        Predictor.from_run(experiment, folds=[4])


def test_oracle_measurements_in_pixels_and_millimetres(oracle_predictor: Predictor, tmp_path: Path) -> None:
    image = _nodule_image()  # nodule rows 30..69 (40 px high), columns 50..109 (60 px wide)
    result, = oracle_predictor.predict(image)
    m = result.measurements
    assert result.nodule_found and m is not None and m.unit == "px"
    assert m.width == pytest.approx(60, abs=3) and m.height == pytest.approx(40, abs=3)
    assert m.taller_than_wide == pytest.approx(40 / 60, abs=0.06)
    dicom = write_dicom(tmp_path / "n.dcm", (image * 255).round().astype(np.uint8), spacing=(0.2, 0.1))
    in_mm, = oracle_predictor.predict([dicom])
    mm = in_mm.measurements
    assert mm is not None and mm.unit == "mm" and mm.spacing_source == "PixelSpacing"
    assert mm.width == pytest.approx(6.0, abs=0.3) and mm.height == pytest.approx(8.0, abs=0.6)
    assert mm.taller_than_wide > 1  # taller than wide in millimetres although wider than tall in pixels


def test_oracle_evidence_table_with_and_without_training_reference(oracle_predictor: Predictor) -> None:
    # Training runs now store the training distribution (checkpoint "radiomics_reference", the run-folder layout (docs/interfaces.md)); older
    # checkpoints have none. Take it away to see the table of such a checkpoint, then give one back.
    oracle_predictor.reference = None
    result, = oracle_predictor.predict(_nodule_image())
    assert [row.name for row in result.evidence] == list(FEATURE_NAMES)
    assert all(row.percentile is None for row in result.evidence)  # no reference stored: nothing made up
    assert all(row.z_score is not None for row in result.evidence)  # the standardiser is stored
    report = build_report(result, oracle_predictor)
    assert report["evidence"]["percentiles_available"] is False
    assert any("percentiles unavailable" in w for w in report["warnings"])
    values = {row.name: row.value for row in result.evidence}
    oracle_predictor.reference = RadiomicsReference.from_checkpoint(
        {"columns": list(FEATURE_NAMES), "values": [[values[n] - 1 for n in FEATURE_NAMES],
                                                    [values[n] + 1 for n in FEATURE_NAMES]]})
    with_reference, = oracle_predictor.predict(_nodule_image())
    assert all(row.percentile == pytest.approx(50.0) for row in with_reference.evidence)


def test_no_nodule_is_stated_and_has_no_evidence(oracle_predictor: Predictor) -> None:
    result, = oracle_predictor.predict(np.full((50, 80), 0.2, dtype=np.float32))
    assert result.nodule_found is False and result.measurements is None and result.evidence == []
    report = build_report(result, oracle_predictor)
    assert report["statement"].startswith("No nodule found") and report["evidence"]["features"] == []


def test_clip_gets_per_frame_masks_and_a_nodule_level_category(oracle_predictor: Predictor, tmp_path: Path) -> None:
    frames = np.stack([(f * 255).round().astype(np.uint8) for f in
                       (np.full((100, 160), 0.2, np.float32), _nodule_image(), _nodule_image(box=(20, 80, 40, 120)))])
    result, = oracle_predictor.predict([write_dicom(tmp_path / "clip.dcm", frames)])
    assert len(result.frames) == 3 and [f.nodule_pixels > 0 for f in result.frames] == [False, True, True]
    assert result.key_frame == 2  # the frame with the largest nodule is the one measured
    assert result.category == result.class_names[2]
    report = build_report(result, oracle_predictor)
    assert report["n_frames"] == 3 and len(report["frames"]) == 3 and "nodule-level" in report["statement"]


def test_models_of_different_experiments_are_not_ensembled(trained_run: Path) -> None:
    a = load_trained_model(trained_run)
    b = load_trained_model(trained_run)
    b.config = b.config.model_copy(update={"method": "rlar"})
    with pytest.raises(DataError, match="method differs"):
        Predictor([a, b])
