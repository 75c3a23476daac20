"""Issue 21 item 7: the report's overlay figure predicts as `rlar predict` does and draws its colours; report.md's
"regenerate with" line names the grid folder as given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def test_regenerate_line_keeps_the_folder_path_and_options(tmp_path: Path) -> None:
    from rlar.reporting.report import FORMATS, regenerate_command
    from rlar.reporting.stats import N_BOOTSTRAP

    root = tmp_path / "runs" / "my grid"
    line = regenerate_command(root, None, FORMATS, True, True, N_BOOTSTRAP)
    assert line == f"rlar report '{root}'"
    line = regenerate_command("runs/ddti", "rlar", ["md"], True, False, 500)
    assert line == "rlar report runs/ddti --reference rlar --format md --no-overlays --bootstrap 500"


def test_overlay_figure_uses_the_prediction_path_and_predict_colours(trained_run: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_rgb

    from rlar.inference.outputs import PRED_COLOUR, TRUE_COLOUR
    from rlar.reporting import figures

    run = trained_run
    calls = []
    import importlib

    evaluate_module = importlib.import_module("rlar.evaluation.evaluate")

    real = evaluate_module.predict

    def spy(*args, **kwargs):
        calls.append(kwargs.get("options"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "predict", spy)
    frame = pd.read_csv(run / "predictions_test.csv")
    fig = figures.overlay_figure(run, frame, n=2)
    assert fig is not None and calls and calls[0] is not None  # the run's prediction section
    colours = set()
    for ax in fig.axes:
        for collection in ax.collections:
            for colour in np.atleast_2d(collection.get_edgecolor()):
                colours.add(tuple(round(c, 3) for c in colour[:3]))
    allowed = {tuple(round(c / 255, 3) for c in PRED_COLOUR), tuple(round(c / 255, 3) for c in TRUE_COLOUR)}
    assert colours and colours <= allowed and to_rgb("lime") not in colours
