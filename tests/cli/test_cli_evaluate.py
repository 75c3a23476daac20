"""`rlar evaluate` scores the run's held-out test images by default and says so; --root needs --source."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))

import _rlar_trained_model  # noqa: E402

from rlar.cli.main import main  # noqa: E402
from rlar.data.splits import load_splits  # noqa: E402


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rlar_trained_model.trained_run(tmp_path_factory)


def test_default_scores_the_test_images_of_the_run(trained_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--out", str(out), "--overlays",
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
    assert main(["evaluate", "--checkpoint", str(trained_run / "checkpoints" / "best.pt"), "--splits",
                 str(trained_run / "splits.json"), "--fold", "0", "--subset", "val", "--out", str(out),
                 "--no-progress"]) == 0
    assert sorted(pd.read_csv(out / "predictions.csv")["image_id"]) == sorted(val_ids)
    with pytest.warns(UserWarning, match="include the images the model was trained"):
        assert main(["evaluate", "--checkpoint", str(trained_run), "--all-images", "--no-progress"]) == 0


def test_root_without_source_and_other_errors_exit_2(trained_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--checkpoint", str(trained_run), "--root", str(tmp_path)]) == 2
    assert "--root" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(trained_run), "--fold", "7"]) == 2
    assert "fold 7" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(trained_run), "--overlays"]) == 2
    assert "--out" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["evaluate", "--checkpoint", str(trained_run), "--out", str(blocker / "x")]) == 2
    assert "not writable" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2  # a folder without a checkpoint: a hint
    assert "checkpoints/best.pt" in capsys.readouterr().err


def test_out_is_checked_before_the_checkpoint_and_sources_come_from_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rlar.data import sources

    blocker = tmp_path / "file"
    blocker.write_text("x")
    # No checkpoint exists either: the unwritable --out is reported first, before anything is loaded.
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(blocker / "x")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not writable" in err and "missing.pt" not in err
    # --source choices are read from the one registry when the parser is built.
    monkeypatch.setitem(sources.SOURCES, "extra_layout", sources.SOURCES["folder"])
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--source", "no_such_layout"])
    assert "extra_layout" in capsys.readouterr().err  # argparse lists the registered choices


def test_prediction_options_default_to_the_run_and_can_be_overridden(trained_run: Path, tmp_path: Path) -> None:
    plain, largest = tmp_path / "plain", tmp_path / "largest"
    assert main(["evaluate", "--checkpoint", str(trained_run), "--out", str(plain), "--no-progress"]) == 0
    assert main(["evaluate", "--checkpoint", str(trained_run), "--out", str(largest), "--tta", "--postprocess",
                 "largest", "--no-progress"]) == 0
    saved = json.loads((plain / "metrics.json").read_text())["prediction"]
    assert saved == {"tta": False, "mask_postprocess": "none", "min_region_fraction": 0.2}  # the run's config
    changed = json.loads((largest / "metrics.json").read_text())["prediction"]
    assert changed["tta"] is True and changed["mask_postprocess"] == "largest"
    # One region per image after the clean-up: never more regions than before, on the same images.
    assert len(pd.read_csv(largest / "predictions.csv")) == len(pd.read_csv(plain / "predictions.csv"))
