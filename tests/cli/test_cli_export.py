"""`rlar export` writes a loadable model and its metadata, and refuses bad models with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlar.cli.main import main


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


@pytest.mark.parametrize("opset", ["3", "99"])
def test_export_opset_out_of_range_is_a_clear_error(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     opset: str) -> None:
    assert main(["export", "--model", str(trained_run), "--opset", opset, "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "--opset" in err and "7 to 20" in err and "config key" not in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_export_on_a_full_disk_is_a_clear_error_and_leaves_no_file(trained_run: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def full_disk(net, args, target, **kwargs):  # what torch does on ENOSPC: a partial file, then RuntimeError
        Path(target).write_bytes(b"\x08\x01")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4 vs 2: No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full_disk)
    out = tmp_path / "exp" / "model.onnx"
    assert main(["export", "--model", str(trained_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert list((tmp_path / "exp").iterdir()) == []  # no 0-byte or partial model.onnx, no sidecar


def test_export_sidecar_documents_the_preprocessing(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    assert main(["export", "--model", str(trained_run), "--format", "torchscript", "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    prep = meta["input"]["preprocessing"]
    assert prep["crop"] == "none" and prep["image_size"] == [64, 64] and prep["label_space"]["scale"] == "acr"
