"""`rlar serve` argument handling (the app itself is tested in tests/serving)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))

import _rlar_trained_model  # noqa: E402

from rlar.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rlar_trained_model.trained_run(tmp_path_factory)


def test_serve_refuses_bad_settings_before_starting(trained_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--model", str(trained_run), "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--model", str(trained_run), "--max-upload-mb", "0"]) == 2
    assert "serve.max_upload_bytes" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "checkpoints/best.pt" in capsys.readouterr().err


def test_serve_starts_uvicorn_on_loopback_by_default(trained_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    started: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: started.update(host=host, port=port, app=app))
    assert main(["serve", "--model", str(trained_run), "--port", "8765"]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 8765 and started["app"] is not None
    assert "http://127.0.0.1:8765" in capsys.readouterr().err
