"""End to end with real training on a tiny phantom: `rlar experiment` trains, a rerun skips, an interrupted run
resumes, and `rlar report` regenerates the same tables byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rlar.cli.main import main


def test_experiment_then_report_on_the_phantom(tiny_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = yaml.safe_load(tiny_grid.read_text())
    # every fold model is also tested on a second, differently seeded phantom (train on one source, test on another)
    raw["external"] = [{"name": "phantom2", "source": "phantom",
                        "options": {"n_cases": 6, "image_size": [32, 32], "seed": 7}}]
    tiny_grid.write_text(yaml.safe_dump(raw))
    out = tmp_path / "grid"
    args = ["experiment", "--config", str(tiny_grid), "--out", str(out), "--methods", "vanilla_mtl,rlar",
            "--seeds", "0", "--no-progress"]
    assert main(args) == 0
    assert "4 runs: 4 trained" in capsys.readouterr().out
    run = out / "rlar" / "seed0" / "fold1"
    for name in ("config.yaml", "log.csv", "metrics.json", "predictions_test.csv", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    predictions = pd.read_csv(run / "predictions_test.csv")
    test_ids = json.loads((out / "splits.json").read_text())[1]
    assert sorted(predictions["image_id"]) == sorted(test_ids.get("test") or test_ids["val"])
    assert {"dice", "label", "label_name", "pred"} <= set(predictions.columns)
    external = pd.read_csv(run / "external" / "phantom2" / "predictions.csv")
    assert len(external) == 6 and {"prob_TR1", "label_binary"} <= set(external.columns)

    # interrupted: metrics gone, last checkpoint kept -> resumed; the others are skipped
    (run / "metrics.json").unlink()
    (run / "predictions_test.csv").unlink()
    assert main(args) == 0
    assert "4 runs: 1 resumed, 3 skipped" in capsys.readouterr().out
    assert (run / "predictions_test.csv").is_file()

    assert main(["report", str(out), "--out", str(tmp_path / "r1"), "--no-figures", "--bootstrap", "200"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "r2"), "--no-figures", "--bootstrap", "200"]) == 0
    files = sorted(p.name for p in (tmp_path / "r1").iterdir())
    assert {"main__test__levels.md", "main__test__binary.csv", "main__external-phantom2__levels.md"} <= set(files)
    for name in files:
        assert (tmp_path / "r1" / name).read_bytes() == (tmp_path / "r2" / name).read_bytes(), name
    table = (tmp_path / "r1" / "main__test__levels.md").read_text()
    assert "| rlar - vanilla_mtl | Dice |" in table


@pytest.mark.slow
def test_annotator_study_scores_against_truth(tiny_grid: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(tiny_grid.read_text())
    raw.update(methods=[], seeds=[0], folds=[0],
               ablations={"annotator": {"methods": ["vanilla_mtl"], "levels": ["L0-truth", "L4-severe"]}})
    tiny_grid.write_text(yaml.safe_dump(raw))
    out = tmp_path / "annot"
    assert main(["experiment", "--config", str(tiny_grid), "--out", str(out), "--no-progress"]) == 0
    noise = json.loads((out / "annotator_noise.json").read_text())
    assert noise["L0-truth"]["mask_dice_vs_truth"] == 1.0 and noise["L0-truth"]["grade_error_rate"] == 0.0
    assert noise["L4-severe"]["grade_error_rate"] > 0.0  # at 32 px the readers differ mostly in grades
    noisy = out / "annot-L4-severe-vanilla_mtl" / "seed0" / "fold0"
    readers = pd.read_csv(noisy / "predictions_test.csv")
    truth = pd.read_csv(noisy / "truth" / "predictions.csv")
    assert list(readers["image_id"]) == list(truth["image_id"])
    assert (readers["label"] != truth["label"]).any()  # same images, scored against the readers' and true levels
    assert main(["report", str(out), "--no-overlays", "--bootstrap", "50"]) == 0
    report = out / "report"
    assert (report / "annotator-L4-severe__truth__levels.md").is_file()
    assert (report / "annotator.png").stat().st_size > 1000
    summary = pd.read_csv(report / "annotator.csv")  # the figure's numbers: one run per point here
    runs = pd.read_csv(report / "runs.csv")
    point = summary.query("level == 'L4-severe' and evaluation == 'truth' and metric == 'dice'")
    run = runs.query("arm == 'annot-L4-severe-vanilla_mtl' and evaluation == 'truth' and space == 'levels'")
    assert len(point) == len(run) == 1 and int(point["n_runs"].iloc[0]) == 1
    assert point["mean"].iloc[0] == pytest.approx(run["dice"].iloc[0], abs=1e-6)
    assert set(summary["level"]) == {"L0-truth", "L4-severe"} and set(summary["evaluation"]) == {"readers", "truth"}
