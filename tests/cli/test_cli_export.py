"""`rlar export` writes a loadable model and its metadata, and refuses bad models with exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))

import _rlar_trained_model  # noqa: E402

from rlar.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rlar_trained_model.trained_run(tmp_path_factory)


def test_export_torchscript_and_metadata(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    out = tmp_path / "m.pt"
    assert main(["export", "--model", str(trained_run), "--format", "torchscript", "--out", str(out)]) == 0
    assert "exported" in capsys.readouterr().out
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    assert meta["outputs"] == ["mask_prob", "class_prob", "h_tirads"] and meta["input"]["shape"] == ["batch", 1, 64, 64]
    mask, probs, h = torch.jit.load(str(out))(torch.zeros(1, 1, 64, 64))
    assert mask.shape == (1, 1, 64, 64) and probs.shape == (1, 5) and h.shape == (1, 13)


def test_export_errors_exit_2(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"")
    assert main(["export", "--model", str(bad), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "zero bytes" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", "--model", str(trained_run), "--out", str(blocker / "m.onnx")]) == 2
    assert "cannot write" in capsys.readouterr().err
