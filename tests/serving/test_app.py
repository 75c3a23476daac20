"""The viewer's HTTP behaviour with good and bad uploads (FastAPI TestClient); the server survives all of them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.inference import _rlar_trained_model
from tests.inference._dicom import write_dicom

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from rlar.inference import Predictor
from rlar.serving.app import create_app
from rlar.serving.limits import validate_limits


@pytest.fixture(scope="module")
def client(trained_run: Path) -> TestClient:
    limits = validate_limits(max_upload_bytes=300_000, max_pixels=1_000_000)
    # The viewer answers only the host names it was started for (loopback by default): address it as a browser
    # on this machine would.
    return TestClient(create_app(Predictor.from_run(trained_run), limits), raise_server_exceptions=False,
                      base_url="http://127.0.0.1:8000")


def _png(shape: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _alive(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"


def test_upload_shows_category_and_offers_downloads(client: TestClient, tmp_path: Path) -> None:
    png = _rlar_trained_model.phantom_png(tmp_path).read_bytes()
    page = client.post("/predict", files={"file": ("../../etc/passwd", png, "text/plain")})
    assert page.status_code == 200
    assert "id='category'" in page.text and "Research use only" in page.text and "passwd" in page.text
    report = client.post("/api/predict", files={"file": ("scan.png", png, "image/png")}).json()
    assert report["category"] in report["class_probabilities"] and report["provenance"]["arguments"]["command"] == "serve"
    downloaded = client.get(report["files"]["json"])
    assert downloaded.status_code == 200 and downloaded.json()["category"] == report["category"]
    html = client.get(report["files"]["html"])
    assert html.status_code == 200 and "data:image/png;base64," in html.text


@pytest.mark.parametrize(("payload", "status", "message"), [
    (b"%PDF-1.7 this is a document", 415, "checked by content"),
    (b"", 400, "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 400, "corrupt or truncated"),
])
def test_bad_uploads_get_4xx_and_the_server_keeps_running(client: TestClient, payload: bytes, status: int,
                                                          message: str) -> None:
    response = client.post("/api/predict", files={"file": ("image.png", payload, "image/png")})
    assert response.status_code == status and message in response.json()["error"]
    _alive(client)


def test_truncated_image_and_html_error_page(client: TestClient) -> None:
    png = _png((200, 200))
    response = client.post("/predict", files={"file": ("cut.png", png[: len(png) - 30], "image/png")})
    assert response.status_code == 400 and "id='error'" in response.text
    _alive(client)


def test_limits_on_bytes_and_on_declared_pixels(client: TestClient, tmp_path: Path) -> None:
    too_many_pixels = _png((1200, 1000))  # small file, 1.2 megapixels declared
    response = client.post("/api/predict", files={"file": ("big.png", too_many_pixels, "image/png")})
    assert response.status_code == 413 and "refused before decoding" in response.json()["error"]
    huge_dicom = write_dicom(tmp_path / "huge.dcm", np.zeros((4, 4), dtype=np.uint8), declared=(14000, 14000, 1))
    response = client.post("/api/predict", files={"file": ("x.dcm", huge_dicom.read_bytes(), "application/dicom")})
    assert response.status_code == 413
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(400_000)
    assert client.post("/api/predict", files={"file": ("x.png", too_big, "image/png")}).status_code == 413
    _alive(client)


def test_dicom_without_pixels_no_file_and_unknown_results(client: TestClient, tmp_path: Path) -> None:
    no_pixels = write_dicom(tmp_path / "nopix.dcm", None)
    response = client.post("/api/predict", files={"file": ("n.dcm", no_pixels.read_bytes(), "application/dicom")})
    assert response.status_code == 400 and "no pixel data" in response.json()["error"]
    assert client.post("/api/predict", data={"other": "x"}).status_code == 400
    assert client.get("/result/0123456789abcdef0123456789abcdef.json").status_code == 404
    assert client.get("/result/..%2F..%2Fetc%2Fpasswd.json").status_code == 404
    _alive(client)


def test_limits_are_validated_by_name() -> None:
    from rlar.errors import ConfigError

    with pytest.raises(ConfigError, match="serve.max_upload_bytes"):
        validate_limits(max_upload_bytes=0)


def test_12bit_png_upload_carries_the_bit_depth_warning(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)).save(buffer, format="PNG")
    with pytest.warns(Warning):
        report = client.post("/api/predict", files={"file": ("twelve.png", buffer.getvalue(), "image/png")}).json()
    assert any("use only 12 of the 16 bits" in w for w in report["warnings"]), report["warnings"]
