"""Bad input on the command line ends in a clear message and exit code 2, never a traceback (issue 11)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlar.cli.main import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["data", "summary", "phantom", "--option", "colour=red"], ["--option colour", "(accepted: n_cases"]),
        (["data", "summary", "phantom", "--option", "n_case=3"], ["--option n_case", "did you mean 'n_cases'?"]),
        (["data", "summary", "phantom", "--option", "n_cases=lots"], ["--option n_cases", "valid integer"]),
        (["data", "summary", "folder"], ["--root", "give its root"]),
        (["radiomics", "folder", "--out", "x.csv"], ["--root"]),
    ],
)
def test_bad_source_arguments_exit_2_with_the_flag_named(argv: list[str], needles: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(argv, capsys)
    assert code == 2 and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_misspelled_option_of_the_folder_source_suggests_scale(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / "a.png")
    code, err = _run(["data", "summary", "folder", "--root", str(tmp_path), "--option", "scal=ddti"], capsys)
    assert code == 2 and "did you mean 'scale'?" in err


def test_summary_of_a_folder_that_is_not_a_dataset_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "something.txt").write_text("x")
    code, err = _run(["data", "summary", "folder", "--root", str(tmp_path)], capsys)
    assert code == 2 and "not a folder dataset" in err and str(tmp_path) in err


def test_plot_out_with_an_unknown_suffix_suggests_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["plot", str(tmp_path), "--out", str(tmp_path / "x.jpgg")], capsys)
    assert code == 2 and "x.jpgg" in err and "did you mean '.jpg'?" in err


@pytest.mark.parametrize("command", ["radiomics", "plot"])
def test_unwritable_out_fails_before_any_work(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "o.png"
    if command == "radiomics":
        argv = ["radiomics", "phantom", "--option", "n_cases=1", "--out", str(out.with_suffix(".csv"))]
    else:
        argv = ["plot", str(tmp_path), "--out", str(out)]
    code, err = _run(argv, capsys)
    assert code == 2 and "not a folder" in err and str(out.parent) in err


def test_missing_out_folder_is_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "missing" / "deeper" / "r.csv"
    code, _ = _run(["radiomics", "phantom", "--option", "n_cases=2", "--out", str(out)], capsys)
    assert code == 0 and out.is_file()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = _run(["radiomics", "phantom", "--option", "n_cases=1", "--out", str(locked / "r.csv")], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2 and str(locked / "r.csv") in err
