"""Training-curve figures from fake run folders (log.csv written with pandas): file written, panels, overlays,
missing columns, tau line, errors, and the ``rlar plot`` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from rlar.cli.main import main
from rlar.errors import ConfigError, DataError
from rlar.reporting.curves import PANELS, RUN_GID_PREFIX, default_labels, make_figure, plot_runs, read_tau

N_EPOCHS = 4


def _multitask_log(seed: int, val_every: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    epochs = np.arange(1, N_EPOCHS + 1)
    frame = pd.DataFrame({
        "epoch": epochs,
        "global_step": epochs * 3,
        "lr": 1e-3 * np.linspace(1.0, 0.1, N_EPOCHS),
        "total": 3.0 / epochs + rng.random(N_EPOCHS) * 0.1,
        "cosine": rng.uniform(-0.2, 0.4, N_EPOCHS),
        "loss_seg": 1.0 / epochs,
        "loss_cls": 1.5 / epochs,
        "loss_rad": 0.5 / epochs,
        "val_dice": np.linspace(0.1, 0.6, N_EPOCHS),
        "val_macro_f1": np.linspace(0.05, 0.3, N_EPOCHS),
        "val_score": np.linspace(0.075, 0.45, N_EPOCHS),
    })
    # Validation every `val_every` epochs (and the last): other rows have empty validation cells, as in real logs.
    off = (epochs % val_every != 0) & (epochs != N_EPOCHS)
    frame.loc[off, ["val_dice", "val_macro_f1", "val_score"]] = np.nan
    return frame


def _make_run(folder: Path, log: pd.DataFrame, strategy: dict | None = None, best_epoch: int | None = None) -> Path:
    folder.mkdir(parents=True)
    log.to_csv(folder / "log.csv", index=False)
    if strategy is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump({"method": strategy["name"], "strategy": strategy}))
    if best_epoch is not None:
        (folder / "metrics.json").write_text(json.dumps({"dice": 0.5, "run": {"best_epoch": best_epoch}}))
    return folder


def _axis(fig: Figure, column: str) -> Axes:
    return fig.axes[[p.column for p in PANELS].index(column)]


def _run_lines(ax: Axes) -> list[Line2D]:
    return [line for line in ax.get_lines() if (line.get_gid() or "").startswith(RUN_GID_PREFIX)]


def test_single_run_png_written_with_all_panels(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "rlar", _multitask_log(0), best_epoch=3)
    out = plot_runs([run], tmp_path / "figs" / "curves.png")

    assert out == tmp_path / "figs" / "curves.png"
    assert out.stat().st_size > 10_000
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        # A real figure, not an empty canvas: many distinct colours are drawn.
        assert width > 1000 and height > 500
        assert len(image.convert("RGB").getcolors(maxcolors=100_000) or []) > 50

    fig = make_figure([run])
    assert len(fig.axes) == len(PANELS) == 8
    for ax, panel in zip(fig.axes, PANELS, strict=True):
        lines = _run_lines(ax)
        assert len(lines) == 1, panel.column
        # The plotted values are the log's values, epoch by epoch.
        expected = _multitask_log(0)[panel.column].to_numpy()
        np.testing.assert_allclose(np.asarray(lines[0].get_ydata()), expected)
        assert ax.get_title() and ax.get_xlabel() == "epoch"


def test_overlay_one_colour_per_run_and_labels(tmp_path: Path) -> None:
    runs = [_make_run(tmp_path / name, _multitask_log(i)) for i, name in enumerate(["a", "b", "c"])]
    fig = make_figure(runs, labels=["RLAR", "vanilla", "PCGrad"])

    cosine_lines = _run_lines(_axis(fig, "cosine"))
    assert [line.get_label() for line in cosine_lines] == ["RLAR", "vanilla", "PCGrad"]
    colours = {line.get_color() for line in cosine_lines}
    assert len(colours) == 3
    # The same run has the same colour in every panel.
    dice_lines = _run_lines(_axis(fig, "val_dice"))
    assert [line.get_color() for line in dice_lines] == [line.get_color() for line in cosine_lines]
    # The figure legend names every run.
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts[:3] == ["RLAR", "vanilla", "PCGrad"]


def test_default_labels_are_folder_names_made_distinct(tmp_path: Path) -> None:
    assert default_labels([tmp_path / "rlar", tmp_path / "vanilla_mtl"]) == ["rlar", "vanilla_mtl"]
    same_leaf = [tmp_path / "rlar" / "fold_0", tmp_path / "vanilla" / "fold_0"]
    assert default_labels(same_leaf) == ["rlar/fold_0", "vanilla/fold_0"]


def test_zero_line_and_tau_line_on_cosine_axis(tmp_path: Path) -> None:
    rlar = _make_run(tmp_path / "rlar", _multitask_log(0),
                     strategy={"name": "rlar", "options": {"rlar": {"tau": 0.3, "absolute": False}}})
    vanilla = _make_run(tmp_path / "vanilla", _multitask_log(1), strategy={"name": "sum", "options": {}})
    fig = make_figure([rlar, vanilla])
    ax = _axis(fig, "cosine")
    reference = [line for line in ax.get_lines() if line not in _run_lines(ax)]
    levels = sorted(float(np.asarray(line.get_ydata())[0]) for line in reference)
    assert levels == pytest.approx([0.0, 0.3])
    # The tau line has the RLAR run's colour; its value is named in the legend.
    tau_line = next(line for line in reference if np.asarray(line.get_ydata())[0] == pytest.approx(0.3))
    assert tau_line.get_color() == _run_lines(ax)[0].get_color()
    legend = ax.get_legend()
    assert legend is not None and any("tau = 0.3" in t.get_text() for t in legend.get_texts())
    low, high = ax.get_ylim()
    assert low <= 0.0 and high >= 0.3


def test_read_tau(tmp_path: Path) -> None:
    def config(folder: str, strategy: dict) -> Path:
        path = tmp_path / folder
        path.mkdir()
        (path / "config.yaml").write_text(yaml.safe_dump({"strategy": strategy}))
        return path

    assert read_tau(config("zero", {"name": "rlar", "options": {"rlar": {"tau": 0.0}}})) == []
    assert read_tau(config("pos", {"name": "rlar", "options": {"rlar": {"tau": 0.2}}})) == [0.2]
    assert read_tau(config("abs", {"name": "rlar", "options": {"rlar": {"tau": 0.2, "absolute": True}}})) == [
        -0.2, 0.2]
    # A tau left in the options of a strategy not in use is not the run's threshold.
    assert read_tau(config("other", {"name": "pcgrad", "options": {"rlar": {"tau": 0.2}}})) == []
    assert read_tau(tmp_path / "no_config_here") == []


def test_missing_columns_and_nan_cosine(tmp_path: Path) -> None:
    # Segmentation-only: no classification/rad loss, no classification metric, cosine logged but all NaN.
    seg_log = _multitask_log(0).drop(columns=["loss_cls", "loss_rad", "val_macro_f1"])
    seg_log["cosine"] = math.nan
    seg = _make_run(tmp_path / "seg_only", seg_log)

    fig = make_figure([seg])
    assert len(fig.axes) == len(PANELS)
    for column in ("loss_cls", "loss_rad", "cosine", "val_macro_f1"):
        ax = _axis(fig, column)
        assert _run_lines(ax) == [], column
        # The empty panel says why instead of showing a blank frame.
        assert any(t.get_text() for t in ax.texts), column
    assert len(_run_lines(_axis(fig, "loss_seg"))) == 1

    # Overlaid with a multitask run, only the multitask run is drawn where the seg-only run has nothing.
    mtl = _make_run(tmp_path / "mtl", _multitask_log(1))
    fig = make_figure([seg, mtl])
    assert [line.get_label() for line in _run_lines(_axis(fig, "cosine"))] == ["mtl"]
    assert [line.get_label() for line in _run_lines(_axis(fig, "val_dice"))] == ["seg_only", "mtl"]
    assert plot_runs([seg, mtl], tmp_path / "mixed.png").stat().st_size > 0


def test_sparse_validation_joins_validated_epochs_and_stars_best(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", _multitask_log(0, val_every=2), best_epoch=2)
    fig = make_figure([run])
    ax = _axis(fig, "val_dice")
    (line,) = _run_lines(ax)
    np.testing.assert_array_equal(line.get_xdata(), [2, 4])  # NaN rows are skipped, the rest joined
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 1 and list(np.asarray(stars[0].get_xdata())) == [2]


def test_single_epoch_run(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "one", _multitask_log(0).iloc[:1])
    fig = make_figure([run])
    low, high = _axis(fig, "total").get_xlim()
    assert low < 1 < high and high - low >= 1  # not zoomed onto fractions of an epoch
    assert plot_runs([run], tmp_path / "one.png").stat().st_size > 0


def test_folder_without_log_raises_data_error(tmp_path: Path) -> None:
    good = _make_run(tmp_path / "good", _multitask_log(0))
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(DataError, match="not_a_run") as info:
        plot_runs([good, empty], tmp_path / "x.png")
    assert "log.csv" in str(info.value)
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(DataError, match="missing_folder"):
        make_figure([tmp_path / "missing_folder"])
    (empty / "log.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        make_figure([empty])


def test_label_count_mismatch(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", _multitask_log(0))
    with pytest.raises(ConfigError, match="labels"):
        make_figure([run], labels=["a", "b"])


def test_cli_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _make_run(tmp_path / "a", _multitask_log(0))
    b = _make_run(tmp_path / "b", _multitask_log(1))
    out = tmp_path / "cmp.png"
    assert main(["plot", str(a), str(b), "--out", str(out), "--labels", "RLAR", "vanilla"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.stat().st_size > 10_000

    # A folder without log.csv: exit code 2 and the folder named on stderr, no traceback.
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty"), "--out", str(tmp_path / "no.png")]) == 2
    err = capsys.readouterr().err
    assert "rlar plot: error" in err and "empty" in err and "log.csv" in err
    assert main(["plot", str(a), "--out", str(tmp_path / "l.png"), "--labels", "x", "y"]) == 2
    assert "labels" in capsys.readouterr().err
