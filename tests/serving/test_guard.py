"""Who may talk to the viewer and what leaves it (issue 23, item 3): Host and same-origin checks (403), security
headers on every response, no local paths or training configuration in answers, uploads kept in memory, every
frame of an upload counted before decoding, one log line per request."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.inference import _rlar_trained_model

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from rlar.inference import Predictor
from rlar.serving.app import SECURITY_HEADERS, create_app
from rlar.serving.limits import validate_limits
from tests._benchmarks import load_benchmark

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def client(trained_run: Path) -> TestClient:
    limits = validate_limits(max_upload_bytes=3_000_000, max_pixels=1_000_000)
    app = create_app(Predictor.from_run(trained_run), limits, {"model": str(trained_run), "tta": False})
    return TestClient(app, raise_server_exceptions=False, base_url=BASE)


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _rlar_trained_model.phantom_png(tmp_path_factory.mktemp("png")).read_bytes()


def _benchmark():
    return load_benchmark("decode_memory")


def _upload(client: TestClient, data: bytes, headers: dict[str, str] | None = None,
            path: str = "/api/predict") -> httpx.Response:
    response: httpx.Response = client.post(path, files={"file": ("scan.png", data, "image/png")}, headers=headers or {})
    return response


def test_foreign_origin_and_foreign_host_get_403(client: TestClient, png: bytes) -> None:
    evil = _upload(client, png, {"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "cross-origin" in evil.text
    rebound = _upload(client, png, {"Host": "evil.example", "Origin": "http://evil.example"})
    assert rebound.status_code == 403 and "evil.example" in rebound.text and "--allow-host" in rebound.text
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 403
    assert client.get("/health", headers={"Host": "evil.example:8000"}).status_code == 403
    for origin in ("null", "http://127.0.0.1:9999", "https://127.0.0.1:8000", "http://localhost:8000"):
        assert _upload(client, png, {"Origin": origin}).status_code == 403, origin
    assert _upload(client, png, {"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _upload(client, png, {"Sec-Fetch-Site": "same-site"}).status_code == 403


def test_same_origin_and_plain_clients_are_served(client: TestClient, png: bytes) -> None:
    same = _upload(client, png, {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}, path="/predict")
    assert same.status_code == 200 and "id='category'" in same.text
    assert _upload(client, png).status_code == 200  # curl and scripts send no Origin
    assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200


def test_other_names_only_when_allowed(trained_run: Path) -> None:
    app = create_app(Predictor.from_run(trained_run), allowed_hosts=("127.0.0.1", "viewer.lan"))
    lan = TestClient(app, base_url="http://viewer.lan:8000")
    assert lan.get("/health").status_code == 200
    assert lan.get("/health", headers={"Host": "localhost:8000"}).status_code == 403


def test_security_headers_on_every_response(client: TestClient, png: bytes) -> None:
    token_report = _upload(client, png).json()
    responses = [
        client.get("/"), client.get("/health"), _upload(client, png, path="/predict"),
        _upload(client, b"not an image", path="/predict"), _upload(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
        client.get("/result/" + "0" * 32 + ".json"),
        client.get(token_report["files"]["json"]), client.get(token_report["files"]["html"]),
        client.get("/", headers={"Host": "evil.example"}),
        _upload(client, b"\x89PNG\r\n\x1a\n" + bytes(3_200_000)),  # 413 from the body limit
        client.get("/no-such-page"),
    ]
    assert {r.status_code for r in responses} >= {200, 400, 403, 404, 413, 415}
    for response in responses:
        for name, value in SECURITY_HEADERS:
            assert response.headers.get(name) == value, (response.request.url, name)
    csp = dict(SECURITY_HEADERS)["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp  # the pages have no scripts


def test_no_local_paths_or_training_config_leave_the_server(client: TestClient, png: bytes,
                                                            trained_run: Path) -> None:
    report = _upload(client, png).json()
    provenance = report["provenance"]
    assert "config" not in provenance and "model" not in provenance["arguments"]
    assert provenance["arguments"]["command"] == "serve" and provenance["models"][0]["sha256"]
    texts = [client.get("/").text, client.get("/health").text, _upload(client, png, path="/predict").text,
             client.get(report["files"]["json"]).text, client.get(report["files"]["html"]).text,
             _upload(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).text]
    for text in texts:
        assert str(trained_run) not in text and str(Path.home()) not in text and "/tmp" not in text
        assert "learning_rate" not in text and "optimizer" not in text


def test_large_upload_stays_in_memory(client: TestClient, png: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    import starlette.formparsers

    rolled: list[int] = []

    class Recording(tempfile.SpooledTemporaryFile):
        def rollover(self) -> None:
            rolled.append(1)
            super().rollover()

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", Recording)
    padded = png + bytes(2_000_000)  # a 2 MB upload: Starlette spools anything over 1 MB to a temporary file
    response = _upload(client, padded)
    assert response.status_code == 200 and not rolled
    page = client.get("/").text
    assert "never written to disk" in page and "last 32 results" in page


def test_an_upload_with_a_huge_second_page_is_refused_before_decoding(client: TestClient, tmp_path: Path) -> None:
    bench = _benchmark()
    tiff = bench.write_tiff_pages(tmp_path / "pages.tif", [(16, 16), (1200, 1000)]).read_bytes()
    response = client.post("/api/predict", files={"file": ("pages.tif", tiff, "image/tiff")})
    assert response.status_code == 413 and "refused before decoding" in response.json()["error"]
    mpo = bench.write_mpo(tmp_path / "p.mpo", [(16, 16), (1500, 1000)]).read_bytes()
    assert client.post("/api/predict", files={"file": ("p.jpg", mpo, "image/jpeg")}).status_code == 413
    assert client.get("/health").json()["status"] == "ok"


def test_every_request_is_logged_in_one_line(client: TestClient, png: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rlar.serving"):
        report = _upload(client, png).json()
        client.get(report["files"]["json"])
        client.get("/", headers={"Host": "evil.example"})
    lines = [r.getMessage() for r in caplog.records if r.name == "rlar.serving"]
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert '"POST /api/predict" 200' in lines[0]
    assert '"GET /result/<token>.json" 200' in lines[1]  # the result token is not written to the log
    assert '"GET /" 403' in lines[2] and "refused" in lines[2]


def test_predictions_run_one_at_a_time(trained_run: Path, png: bytes) -> None:
    import threading
    import time

    predictor = Predictor.from_run(trained_run)
    original = predictor.predict_one
    active, peak = [0], [0]
    guard = threading.Lock()

    def tracked(*args, **kwargs):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        try:
            return original(*args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    predictor.predict_one = tracked  # type: ignore[method-assign]
    client = TestClient(create_app(predictor), base_url=BASE)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(_upload(client, png).status_code)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200, 200, 200] and peak[0] == 1


def test_a_png_past_pillows_own_bomb_limit_is_413_like_any_oversized_image(client: TestClient) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 14000, 14000, 8, 0, 0, 0, 0)  # 196 M grey pixels declared, 60 bytes on disk
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    response = client.post("/api/predict", files={"file": ("bomb.png", png, "image/png")})
    assert response.status_code == 413 and "refused before decoding" in response.json()["error"]
