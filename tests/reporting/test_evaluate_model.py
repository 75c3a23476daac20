"""The library behind `rlar evaluate` (rlar.reporting.evaluate_model), called without the command: request in,
result out, notes through a callback, files written by separate functions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rlar.data.splits import load_splits
from rlar.reporting.evaluate_model import (
    EvaluationRequest,
    evaluate_trained_model,
    write_confusion_matrix,
    write_overlays,
    write_tables,
)
from rlar.reporting.figures import confusion_matrix_figure


def test_confusion_matrix_figure_labels_every_cell() -> None:
    fig = confusion_matrix_figure([[3, 1], [0, 5]], ["TR3", "TR4"], "best.pt: test")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "3", "5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["TR3", "TR4"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "reference" and ax.get_title() == "best.pt: test"


def test_evaluate_trained_model_scores_the_runs_test_images(trained_run: Path, tmp_path: Path) -> None:
    notes: list[str] = []
    result = evaluate_trained_model(EvaluationRequest(model=trained_run, progress=False, keep_masks=True),
                                    note=notes.append)
    test_ids = load_splits(trained_run / "splits.json")[0]["test"]
    assert sorted(result.table["image_id"]) == sorted(test_ids)
    assert result.metrics["n_images"] == len(test_ids) and result.images.startswith("fold 0 'test' images")
    assert notes == [f"scoring {result.images}"]  # the training source as trained on: no preprocessing note
    reported = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert result.metrics["dice"] == pytest.approx(reported["dice"])
    assert result.dataset is not None and result.has_masks

    predictions, metrics = write_tables(result, tmp_path)
    assert sorted(pd.read_csv(predictions)["image_id"]) == sorted(test_ids)
    assert json.loads(metrics.read_text())["images"] == result.images
    assert write_overlays(result.frame, result.dataset, tmp_path / "overlays") == len(test_ids)
    figure = write_confusion_matrix(result, tmp_path / "cm.png")
    assert figure == tmp_path / "cm.png" and figure.stat().st_size > 0


def test_no_confusion_matrix_without_a_classifier(trained_run: Path, tmp_path: Path) -> None:
    result = evaluate_trained_model(EvaluationRequest(model=trained_run, subset="val", progress=False))
    assert not result.has_masks  # masks are kept only on request
    result.class_names = None
    assert write_confusion_matrix(result, tmp_path / "cm.png") is None
    assert not (tmp_path / "cm.png").exists()
