"""`rlar predict` end to end: files, folders, bad files listed at the end, exit codes, phantom warning."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from rlar.cli.main import main
from tests.inference import _rlar_trained_model


def test_predict_a_folder_writes_every_file_and_lists_failures(trained_run: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    _rlar_trained_model.phantom_png(images, 0, size=(70, 90))
    _rlar_trained_model.phantom_png(images / "nested", 1)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code = main(["predict", "--model", str(trained_run), str(images), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1  # some inputs failed, the others were predicted
    assert "broken.png" in captured.err and "could not predict 1 input" in captured.err
    assert "trained only on the synthetic phantom" in captured.err
    for stem in ("phantom_0", "nested__phantom_1"):
        for suffix in (".mask.png", ".overlay.png", ".json", ".html"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    assert Image.open(out / "phantom_0.mask.png").size == (90, 70)  # the input's own resolution (W, H)
    report = json.loads((out / "phantom_0.json").read_text())
    assert report["trained_on_phantom"] and report["label_space"]["classes"] == ["TR1", "TR2", "TR3", "TR4", "TR5"]
    assert report["provenance"]["arguments"]["inputs"] == [str(images)]
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 2 and {"category", "prob_TR1", "nodule_found"} <= set(table.columns)
    assert pd.read_csv(out / "failures.csv")["file"].str.endswith("broken.png").all()
    assert "ignored 1 file(s)" in captured.out


def test_predict_exit_codes_for_bad_models_and_inputs(trained_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    notes = tmp_path / "model.pt"
    notes.write_text("hello")
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    assert main(["predict", "--model", str(notes), str(image), "--out", str(tmp_path / "o")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
    assert main(["predict", "--model", str(trained_run), str(tmp_path / "missing.png"), "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["predict", "--model", str(trained_run), str(image), "--out", str(tmp_path / "o"),
                 "--spacing", "0.1"]) == 2
    assert "--spacing" in capsys.readouterr().err
    assert main(["predict", "--model", str(trained_run), str(image), "--out", str(tmp_path / "o"),
                 "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_predict_with_spacing_reports_millimetres(trained_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    out = tmp_path / "o"
    assert main(["predict", "--model", str(trained_run), str(image), "--out", str(out), "--spacing", "0.1,0.1",
                 "--tta", "--threads", "1", "--no-progress"]) == 0
    report = json.loads((out / "phantom_0.json").read_text())
    if report["nodule_found"]:
        assert report["measurements"]["unit"] == "mm" and report["measurements"]["spacing_source"] == "given"
    assert report["provenance"]["tta"] is True
    assert "predicted 1 image(s)" in capsys.readouterr().out


def test_unwritable_output_fails_before_any_work(trained_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    assert main(["predict", "--model", str(trained_run), str(image), "--out", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


@pytest.mark.ddti
def test_predict_on_ddti_images(trained_run: Path, ddti_root: Path, tmp_path: Path) -> None:
    images = sorted(ddti_root.glob("*_1.jpg"))[:3]
    out = tmp_path / "ddti"
    assert main(["predict", "--model", str(trained_run), *map(str, images), "--out", str(out), "--no-progress"]) == 0
    for image in images:
        report = json.loads((out / f"{image.stem}.json").read_text())
        assert report["image_shape_hw"] == [360, 560] and report["warnings"][0].startswith("this model was trained")
        assert Image.open(out / f"{image.stem}.overlay.png").size == (560, 360)


def test_predict_never_writes_over_files_it_did_not_create(trained_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Issue 23: a ground-truth case1.mask.png and a case1.json beside the input are neither predicted nor replaced;
    an output folder holding inputs or earlier outputs is refused unless --overwrite."""
    import shutil

    folder = tmp_path / "cases"
    png = _rlar_trained_model.phantom_png(folder, 0)
    shutil.move(png, folder / "case1.png")
    Image.new("L", (64, 64), 255).save(folder / "case1.mask.png")  # the user's reference mask
    (folder / "case1.json").write_text('{"mine": true}')
    truth = (folder / "case1.mask.png").read_bytes()
    assert main(["predict", "--model", str(trained_run), str(folder), "--out", str(folder), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (folder / "case1.mask.png").read_bytes() == truth and "mine" in (folder / "case1.json").read_text()
    out = tmp_path / "out"
    assert main(["predict", "--model", str(trained_run), str(folder), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "predicted 1 image(s)" in captured.out and "named like rlar predict's own outputs" in captured.out
    assert not (out / "case1.mask.json").exists()
    assert main(["predict", "--model", str(trained_run), str(folder), "--out", str(out), "--no-progress"]) == 2
    assert "already holds" in capsys.readouterr().err
    assert main(["predict", "--model", str(trained_run), str(folder), "--out", str(out), "--overwrite",
                 "--no-progress"]) == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_max_megapixels_must_be_finite(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                       value: str) -> None:
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    assert main(["predict", "--model", str(trained_run), str(image), "--out", str(tmp_path / "o"),
                 "--max-megapixels", value]) == 2
    assert "--max-megapixels" in capsys.readouterr().err


def _copy_run(run: Path, to: Path) -> None:
    import shutil

    shutil.copytree(run / "checkpoints", to / "checkpoints")
    shutil.copy(run / "config.yaml", to / "config.yaml")


def test_predict_ensembles_a_grid_arm_and_one_of_its_seeds(trained_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Issue 21 item 2: `--model <grid>/<arm>` ensembles every seed's folds, `<grid>/<arm>/seed<k>` one seed's."""
    from rlar.inference import Predictor
    from rlar.runs import grid_run_dir

    grid = tmp_path / "grid"
    for seed, fold in ((0, 0), (0, 1), (1, 0)):
        _copy_run(trained_run, grid_run_dir(grid, "guided_mtl", seed, fold))
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    assert main(["predict", "--model", str(grid / "guided_mtl"), str(image), "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "with 3 model(s)" in captured.out and f"model: {grid / 'guided_mtl'} (guided_mtl" in captured.err
    assert main(["predict", "--model", str(grid / "guided_mtl" / "seed0"), str(image), "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    assert "with 2 model(s)" in capsys.readouterr().out
    picked = Predictor.from_run(grid / "guided_mtl", seeds=[1])
    assert [m.path.parts[-4:-2] for m in picked.members] == [("seed1", "fold0")]
    assert len(Predictor.from_run(grid / "guided_mtl", folds=[0]).members) == 2
    assert main(["predict", "--model", str(grid / "guided_mtl"), "--folds", "5", str(image), "--out",
                 str(tmp_path / "c")]) == 2
    assert "fold(s) [5]" in capsys.readouterr().err


def test_checkpoint_with_non_finite_weights_is_refused(trained_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """Issue 23: a diverged checkpoint is refused by predict and export (no all-NaN ONNX is written)."""
    import torch

    from rlar.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    bad = save_checkpoint(tmp_path / "bad" / "checkpoints" / "best.pt", state)
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    assert main(["predict", "--model", str(bad), str(image), "--out", str(tmp_path / "o")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert main(["export", "--model", str(bad), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_dicom_input_gets_a_dicom_segmentation_that_reads_back_to_the_mask(trained_run: Path, tmp_path: Path) -> None:
    """Issue 21 item 4: the SEG references the source image, identifies the algorithm and holds the predicted mask."""
    import numpy as np
    import pydicom

    from tests.inference._dicom import write_dicom

    png = _rlar_trained_model.phantom_png(tmp_path / "src", 0, size=(70, 90))
    pixels = np.asarray(Image.open(png))
    (tmp_path / "in").mkdir()
    source = write_dicom(tmp_path / "in" / "scan.dcm", pixels, spacing=(0.1, 0.1))
    out = tmp_path / "out"
    assert main(["predict", "--model", str(trained_run), str(source), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "scan.json").read_text())
    assert report["files"]["dicom_seg"] == "scan.seg.dcm"
    seg = pydicom.dcmread(out / "scan.seg.dcm")
    image = pydicom.dcmread(source)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    algorithm = seg.SegmentSequence[0].SegmentAlgorithmName
    assert algorithm == "rlar" and seg.SegmentSequence[0].SegmentLabel == "thyroid nodule"
    predicted = np.asarray(Image.open(out / "scan.mask.png")) > 0
    np.testing.assert_array_equal(seg.pixel_array.astype(bool).reshape(predicted.shape), predicted)


def test_no_report_fast_path_writes_masks_json_and_table_only(trained_run: Path, tmp_path: Path) -> None:
    image = _rlar_trained_model.phantom_png(tmp_path / "in")
    out = tmp_path / "fast"
    assert main(["predict", "--model", str(trained_run), str(image), "--out", str(out), "--no-report",
                 "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["phantom_0.json", "phantom_0.mask.png", "predictions.csv"]
    report = json.loads((out / "phantom_0.json").read_text())
    assert report["class_probabilities"] and report["evidence"]["features"] == []


def test_a_dicom_clip_gets_its_masks_and_a_note_instead_of_a_segmentation(trained_run: Path, tmp_path: Path) -> None:
    import numpy as np

    from tests.inference._dicom import write_dicom

    (tmp_path / "in").mkdir()
    clip = write_dicom(tmp_path / "in" / "clip.dcm", (np.random.default_rng(0).random((3, 64, 64)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    assert main(["predict", "--model", str(trained_run), str(clip), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "clip.json").read_text())
    assert "dicom_seg" not in report["files"] and not (out / "clip.seg.dcm").exists()
    assert any("multi-frame" in w for w in report["warnings"]) and (out / "clip.mask_f0002.png").is_file()
