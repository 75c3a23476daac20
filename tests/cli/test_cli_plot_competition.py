"""`rlar plot --competition`: the task-competition map and table from the competition.csv of several runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rlar.cli.main import main
from rlar.reporting.competition import competition_table, load_competition
from rlar.runs import COMPETITION_FILE
from rlar.training.logging import COMPETITION_STATS


def _write_run(folder: Path, shift: float) -> None:
    rows = []
    for epoch in (0, 2, 4):
        for i, layer in enumerate(("enc1", "enc2", "bottleneck")):
            cos = shift + 0.1 * i + 0.01 * epoch
            rows.append({"epoch": epoch, "layer": layer, "n": 8, "cos_mean": cos, "cos_q10": cos - 0.2,
                         "cos_q50": cos, "cos_q90": cos + 0.2, "abs_cos_mean": abs(cos) + 0.1, "chan_cos_mean": cos,
                         "chan_abs_cos_mean": abs(cos) + 0.2, "log10_norm_ratio": -1.0 - i})
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=["epoch", "layer", *COMPETITION_STATS]).to_csv(folder / COMPETITION_FILE, index=False)


def test_map_and_table_over_a_grid_arm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arm = tmp_path / "grid" / "vanilla_mtl"
    _write_run(arm / "seed0" / "fold0", 0.0)
    _write_run(arm / "seed1" / "fold0", 0.2)
    frame = load_competition([arm])
    assert frame["run"].nunique() == 2 and list(frame["layer"].cat.categories) == ["enc1", "enc2", "bottleneck"]
    table = competition_table(frame)
    init = table[(table["when"] == "initialisation") & (table["layer"] == "enc2")].iloc[0]
    assert init["runs"] == 2 and init["cos_mean"] == pytest.approx(0.2)  # mean of 0.1 and 0.3
    trained = table[(table["when"] == "trained (last epoch)") & (table["layer"] == "bottleneck")].iloc[0]
    assert trained["cos_mean"] == pytest.approx(0.34) and trained["log10_norm_ratio"] == pytest.approx(-3.0)

    out = tmp_path / "map.png"
    assert main(["plot", "--competition", str(arm), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    text = out.with_suffix(".md").read_text()
    assert text.startswith("| when | layer | runs |") and "| initialisation | bottleneck | 2 |" in text
    assert "2 run(s)" in capsys.readouterr().out


def test_no_competition_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "run").mkdir()
    assert main(["plot", "--competition", str(tmp_path / "run"), "--out", str(tmp_path / "m.png")]) != 0
    assert "competition.csv" in capsys.readouterr().err
