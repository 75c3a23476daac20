"""`rlar serve` argument handling (the app itself is tested in tests/serving)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlar.cli.main import main


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


def test_serve_help_shows_the_port_and_host_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--port PORT TCP port to listen on (default: 8000)" in text
    assert "--allow-host NAME" in text and "(default: 127.0.0.1" in text


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("flag", ["--max-upload-mb", "--max-megapixels"])
def test_serve_refuses_non_finite_limits_without_a_traceback(trained_run: Path, flag: str, value: str,
                                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--model", str(trained_run), f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert flag in err and "finite" in err and "Traceback" not in err


def test_serve_answers_only_its_host_names_and_logs_each_request(trained_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    started: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: started.update(app=app))
    assert main(["serve", "--model", str(trained_run), "--allow-host", "Viewer.LAN"]) == 0
    err = capsys.readouterr().err
    assert "answers host names: 127.0.0.1, localhost, ::1, viewer.lan" in err
    client = TestClient(started["app"], base_url="http://viewer.lan:8000")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "evil.example"}).status_code == 403
    logged = capsys.readouterr().err.splitlines()
    assert any('"GET /health" 200' in line for line in logged)
    assert any('"GET /health" 403' in line and "evil.example" in line for line in logged)
    assert main(["serve", "--model", str(trained_run), "--allow-host", "http://x/"]) == 2
    assert "--allow-host" in capsys.readouterr().err
