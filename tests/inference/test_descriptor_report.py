"""The ACR descriptor readings in the per-image report (JSON, HTML, CSV row) and in `rlar report`'s section."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from rlar.evaluation.evaluate import task_label_column, task_prob_column
from rlar.inference.html import descriptor_list
from rlar.inference.report import csv_row, descriptor_readings
from rlar.reporting.descriptors import descriptor_section, descriptor_table
from rlar.tasks import TASKS


def _result(**task_prob: list[float]) -> SimpleNamespace:
    return SimpleNamespace(task_prob={name: np.array(p) for name, p in task_prob.items()})


def test_readings_name_the_most_likely_value_in_acr_words() -> None:
    composition = [0.02, 0.03, 0.04, 0.05, 0.05, 0.81]  # DESCRIPTOR_VALUES order: ... solid last
    foci = [0.1, 0.05, 0.05, 0.1, 0.7]
    readings = descriptor_readings(_result(composition=composition, echogenic_foci=foci))  # type: ignore[arg-type]
    assert [r["line"] for r in readings] == ["composition: solid, p 0.81", "echogenic foci: punctate, p 0.70"]
    assert readings[0]["value"] == "solid" and readings[0]["probability"] == 0.81
    assert list(readings[0]["probabilities"]) == list(TASKS["composition"].classes)
    assert descriptor_readings(_result()) == []  # type: ignore[arg-type]


def test_html_and_csv_show_the_readings_only_when_the_model_has_them() -> None:
    readings = descriptor_readings(_result(margin=[0.1, 0.6, 0.2, 0.1]))  # type: ignore[arg-type]
    assert "<li>margin: ill defined, p 0.60</li>" in descriptor_list({"acr_descriptors": readings})
    assert descriptor_list({"acr_descriptors": []}) == ""
    report = {"image": "a.png", "nodule_found": True, "category": "TR3", "n_frames": 1, "nodule_pixels": 10,
              "class_probabilities": None, "measurements": None, "evidence": {"features": []}, "files": {},
              "acr_descriptors": readings}
    row = csv_row(report)
    assert row["margin"] == "ill_defined" and row["margin_p"] == 0.6


def test_report_section_averages_the_runs_of_each_arm() -> None:
    classes = TASKS["margin"].classes

    def frame(correct: bool) -> pd.DataFrame:
        labels = [0, 1, 0, -1]
        probs = np.full((4, len(classes)), 0.1)
        for i, y in enumerate(labels):
            probs[i, (y if correct else 1 - y) if y >= 0 else 0] = 0.7
        return pd.DataFrame({task_label_column("margin"): labels}
                            | {task_prob_column("margin", c): probs[:, k] for k, c in enumerate(classes)})

    runs = {"acr": [SimpleNamespace(frames={"test": frame(True)}), SimpleNamespace(frames={"test": frame(False)})],
            "plain": [SimpleNamespace(frames={"test": pd.DataFrame({"dice": [0.5]})})]}
    grid = SimpleNamespace(arms={"acr": None, "plain": None}, runs_of=lambda arm: runs[arm])
    table = descriptor_table(grid)  # type: ignore[arg-type]
    assert table[["arm", "task", "n_runs"]].values.tolist() == [["acr", "margin", 2]]  # 'plain' has no descriptor
    row = table.iloc[0]
    assert row["macro_f1_mean"] == 0.5 and row["auroc_mean"] == 0.5 and row["n_mean"] == 3
    assert "| acr | margin | 2 | 0.500 ± 0.707 | 0.500 ± 0.707 | 3 ± 0 |" in descriptor_section(table)
