"""`rlar evaluate` scores the run's held-out test images by default and says so; --root needs --source."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rlar.cli.main import main
from rlar.data.splits import load_splits


def test_default_scores_the_test_images_of_the_run(trained_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(trained_run), "--out", str(out), "--overlays",
                 "--confusion-matrix", "--no-progress"]) == 0
    test_ids = load_splits(trained_run / "splits.json")[0]["test"]
    predictions = pd.read_csv(out / "predictions.csv")
    assert sorted(predictions["image_id"]) == sorted(test_ids)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "'test' images" in metrics["images"] and metrics["n_images"] == len(test_ids)
    run_metrics = json.loads((trained_run / "metrics.json").read_text())
    reported = run_metrics.get("test", run_metrics)
    assert metrics["dice"] == pytest.approx(reported["dice"])  # same checkpoint, same held-out images
    assert len(list((out / "overlays").glob("*.png"))) == len(test_ids)
    assert (out / "confusion_matrix.png").stat().st_size > 0
    assert "scoring fold 0 'test' images" in capsys.readouterr().err


def test_validation_subset_and_all_images_warning(trained_run: Path, tmp_path: Path) -> None:
    val_ids = load_splits(trained_run / "splits.json")[0]["val"]
    out = tmp_path / "val"
    assert main(["evaluate", "--model", str(trained_run / "checkpoints" / "best.pt"), "--splits",
                 str(trained_run / "splits.json"), "--fold", "0", "--subset", "val", "--out", str(out),
                 "--no-progress"]) == 0
    assert sorted(pd.read_csv(out / "predictions.csv")["image_id"]) == sorted(val_ids)
    with pytest.warns(UserWarning, match="include the images the model was trained"):
        assert main(["evaluate", "--model", str(trained_run), "--all-images", "--no-progress"]) == 0


def test_root_without_source_and_other_errors_exit_2(trained_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--model", str(trained_run), "--root", str(tmp_path)]) == 2
    assert "--root" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(trained_run), "--fold", "7"]) == 2
    assert "fold 7" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(trained_run), "--overlays"]) == 2
    assert "--out" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["evaluate", "--model", str(trained_run), "--out", str(blocker / "x")]) == 2
    assert "not writable" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path)]) == 2  # a folder without a checkpoint: a hint
    assert "checkpoints/best.pt" in capsys.readouterr().err


def test_out_is_checked_before_the_checkpoint_and_sources_come_from_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rlar.data import sources

    blocker = tmp_path / "file"
    blocker.write_text("x")
    # No checkpoint exists either: the unwritable --out is reported first, before anything is loaded.
    assert main(["evaluate", "--model", str(tmp_path / "missing.pt"), "--out", str(blocker / "x")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not writable" in err and "missing.pt" not in err
    # --source choices are read from the one registry when the parser is built.
    monkeypatch.setitem(sources.SOURCES, "extra_layout", sources.SOURCES["folder"])
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", str(tmp_path / "missing.pt"), "--source", "no_such_layout"])
    assert "extra_layout" in capsys.readouterr().err  # argparse lists the registered choices


def test_prediction_options_default_to_the_run_and_can_be_overridden(trained_run: Path, tmp_path: Path) -> None:
    plain, largest = tmp_path / "plain", tmp_path / "largest"
    assert main(["evaluate", "--model", str(trained_run), "--out", str(plain), "--no-progress"]) == 0
    assert main(["evaluate", "--model", str(trained_run), "--out", str(largest), "--tta", "--postprocess",
                 "largest", "--no-progress"]) == 0
    saved = json.loads((plain / "metrics.json").read_text())["prediction"]
    assert saved == {"tta": False, "mask_postprocess": "none", "min_region_fraction": 0.2}  # the run's config
    changed = json.loads((largest / "metrics.json").read_text())["prediction"]
    assert changed["tta"] is True and changed["mask_postprocess"] == "largest"
    # One region per image after the clean-up: never more regions than before, on the same images.
    assert len(pd.read_csv(largest / "predictions.csv")) == len(pd.read_csv(plain / "predictions.csv"))


def _cropping_model(trained_run: Path, folder: Path) -> Path:
    """The session's model with a stored scan-area crop (as a DDTI model has): a copy of its checkpoint."""
    import torch

    from rlar.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    assert state["preprocessing"]["crop"] == "none"  # the phantom does not crop
    state["preprocessing"] = {**state["preprocessing"], "crop": "scan_area"}
    state.pop("format"), state.pop("version")
    path = save_checkpoint(folder / "checkpoints" / "best.pt", state)
    assert torch.load(path, weights_only=True)["preprocessing"]["crop"] == "scan_area"
    return path


def _framed_folder(root: Path, n: int = 4) -> Path:
    """DDTI-like screenshots: phantom scans inside a black frame with burned-in 'text', as JPEG (another format
    and another crop than the training images), with PNG masks: a folder source."""
    import numpy as np
    from PIL import Image

    from rlar.data.sources import open_source

    source = open_source("phantom", None, n_cases=n, image_size=[64, 64], seed=11)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        sample = source[i]
        canvas = np.zeros((100, 140), np.float32)
        top, left = 12 + 3 * i, 30 + 5 * i
        canvas[top:top + 64, left:left + 64] = sample.image
        canvas[90:94, 4:40:3] = 1.0  # scanner text under the scan
        mask = np.zeros(canvas.shape, bool)
        mask[top:top + 64, left:left + 64] = sample.mask
        Image.fromarray((canvas * 255).round().astype(np.uint8)).save(root / "images" / f"case{i}.jpg", quality=92)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"case{i}.png")
    return root


def _assert_evaluate_and_predict_agree(out: Path, pred: Path) -> list:
    """`evaluate --save-masks` into ``out`` and `predict` into ``pred`` on the same files: the same images, class
    probabilities to 2e-6 and identical masks. Returns the masks (for further checks)."""
    import numpy as np
    from PIL import Image

    evaluated = pd.read_csv(out / "predictions.csv").set_index("image_id").sort_index()
    predicted = pd.read_csv(pred / "predictions.csv")
    predicted.index = [Path(p).stem for p in predicted["image"]]
    predicted = predicted.sort_index()
    probs = [c for c in evaluated.columns if c.startswith("prob_")]
    assert probs and list(evaluated.index) == list(predicted.index)
    np.testing.assert_allclose(evaluated[probs].to_numpy(), predicted[probs].to_numpy(), atol=2e-6)
    masks = []
    for image_id in evaluated.index:
        a = np.asarray(Image.open(out / "masks" / f"{image_id}.png"))
        b = np.asarray(Image.open(pred / f"{image_id}.mask.png"))
        assert np.array_equal(a, b)
        masks.append(a)
    return masks


def test_evaluate_on_a_folder_and_predict_agree(trained_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """Issue 21 item 1: the model's preprocessing (here a scan-area crop) wins over the folder source's (none), so
    `evaluate --source folder` and `predict` give the same probabilities and masks on the same files."""

    model = _cropping_model(trained_run, tmp_path / "model")
    root = _framed_folder(tmp_path / "external")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model), "--source", "folder", "--root", str(root), "--all-images",
                 "--save-masks", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("the model's own (scan-area crop") == 1
    pred = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(root / "images"), "--out", str(pred), "--no-progress"]) == 0
    masks = _assert_evaluate_and_predict_agree(out, pred)
    assert all(mask.shape == (100, 140) for mask in masks)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preprocessing"]["crop"] == "scan_area"


def test_same_source_is_decided_by_resolved_paths(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    """Issue 23: another spelling of the training folder is still the training source (its splits apply)."""
    from rlar.cli.evaluate import same_root

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert same_root("data", str(tmp_path / "data") + "/")
    assert same_root("./data/../data", tmp_path / "data")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    assert same_root("link", "data")
    assert not same_root("data", tmp_path)
    assert same_root(None, None) and not same_root(None, "data")


def test_external_source_on_another_scale_keeps_the_models_class_names(trained_run: Path, tmp_path: Path) -> None:
    """A folder graded on the DDTI scale, scored with an ACR-scale model: probabilities keep the model's classes
    (classification metrics are skipped with a warning) instead of failing on class_0.. columns."""
    model = _cropping_model(trained_run, tmp_path / "model")
    root = _framed_folder(tmp_path / "external", n=3)
    (root / "labels.csv").write_text("image_id,tirads\ncase0,4a\ncase1,2\ncase2,5\n")
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="classification metrics are skipped"):
        assert main(["evaluate", "--model", str(model), "--source", "folder", "--root", str(root), "--all-images",
                     "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "predictions.csv")
    assert [c for c in table.columns if c.startswith("prob_")] == [f"prob_TR{k}" for k in range(1, 6)]


def test_another_spelling_of_the_training_folder_is_the_training_source(trained_run: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23: `rlar evaluate` decides "same source as training" by resolved paths: `./external/` and a link to
    the folder are the training folder, so its splits apply and --all-images warns about training images."""
    from rlar.data.splits import save_splits
    from rlar.training.checkpoint import load_checkpoint, save_checkpoint

    root = _framed_folder(tmp_path / "external", n=3)
    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    state["config"]["data"].update(source="folder", root=str(root), options={})
    state.pop("format"), state.pop("version"), state.pop("preprocessing")
    run = tmp_path / "folder_run"
    save_checkpoint(run / "checkpoints" / "best.pt", state)
    save_splits(run / "splits.json", [{"train": ["case0"], "val": ["case1"], "test": ["case2"]}])
    (tmp_path / "link").symlink_to(root)
    monkeypatch.chdir(tmp_path)
    for spelling in ("./external/", "link"):
        out = tmp_path / f"eval_{spelling.strip('./')}"
        assert main(["evaluate", "--model", str(run), "--source", "folder", "--root", spelling, "--out", str(out),
                     "--no-progress"]) == 0
        assert list(pd.read_csv(out / "predictions.csv")["image_id"]) == ["case2"]
        with pytest.warns(UserWarning, match="include the images the model was trained"):
            assert main(["evaluate", "--model", str(run), "--source", "folder", "--root", spelling, "--all-images",
                         "--no-progress"]) == 0


@pytest.mark.ddti
def test_evaluate_and_predict_agree_on_ddti_images_written_as_another_folder(ddti_root: Path, tmp_path: Path) -> None:
    """Issue 21's check on real data: DDTI images re-framed (padded) and written as PNG, scored by a DDTI-trained
    model through `evaluate --source folder` and through `predict`: same probabilities and masks."""
    import numpy as np
    from PIL import Image

    from rlar.data.sources import open_source

    run = tmp_path / "run"
    assert main(["train", "--config", "ddti", "--method", "vanilla_mtl", "--set", f"data.root={ddti_root}",
                 "--set", "model.backbone=compact", "--set", "model.options={}", "--set", "data.image_size=[64, 64]",
                 "--set", "optim.epochs=1", "--set", "optim.warmup_epochs=0", "--set", f"data.cache_dir={tmp_path}/c",
                 "--out", str(run), "--no-progress"]) == 0
    source = open_source("ddti", str(ddti_root))
    folder = tmp_path / "external"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    written = 0
    for index, info in enumerate(source.infos):
        if not info.has_mask:
            continue
        sample = source[index]
        pad = ((20, 10), (30, 15))  # another frame than DDTI's own
        image = np.pad((np.asarray(sample.image) * 255).astype(np.uint8), pad)
        mask = np.pad((np.asarray(sample.mask) > 0).astype(np.uint8) * 255, pad)
        Image.fromarray(image).save(folder / "images" / f"{info.image_id}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{info.image_id}.png")
        written += 1
        if written == 6:
            break
    out, pred = tmp_path / "eval", tmp_path / "pred"
    assert main(["evaluate", "--model", str(run), "--source", "folder", "--root", str(folder), "--all-images",
                 "--save-masks", "--out", str(out), "--no-progress"]) == 0
    assert main(["predict", "--model", str(run), str(folder / "images"), "--out", str(pred), "--no-progress"]) == 0
    assert len(_assert_evaluate_and_predict_agree(out, pred)) == 6
