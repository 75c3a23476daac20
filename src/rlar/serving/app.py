"""The FastAPI application of ``rlar serve``.

Routes: ``GET /`` upload form; ``POST /predict`` (multipart field ``file``) result page; ``POST /api/predict`` the
JSON report; ``GET /result/<token>.json|.html`` downloads of a recent result; ``GET /health``.

Robustness: the request body is counted as it arrives and refused past ``max_upload_bytes`` (413), whatever the
client claims; the upload is checked by content and by the pixel count of its header before decoding
(:mod:`.uploads`); images are decoded from memory and results are kept in a bounded in-memory store keyed by a
random token, so nothing a user sends names a file on disk. Every failure of one request becomes a 4xx/5xx
answer; the server keeps serving. Predictions run one at a time (a lock) so concurrent uploads cannot multiply
memory use.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations at run time, and
# they name classes imported inside create_app.
import re
import secrets
import threading
from collections import OrderedDict
from typing import Any

from rlar._optional import require
from rlar.errors import DataError
from rlar.inference.html import render_report_html
from rlar.inference.outputs import overlay, png_bytes
from rlar.inference.predictor import Predictor
from rlar.inference.report import build_report
from rlar.serving.limits import ServerLimits
from rlar.serving.pages import error_page, index_page, result_page
from rlar.serving.uploads import UploadRejected, check_upload, display_name

_TOKEN = re.compile(r"^[0-9a-f]{32}$")
# Multipart framing around the file (boundaries, part headers) on top of the file itself.
_FORM_OVERHEAD = 64 * 1024


class BodyTooLarge(Exception):
    """Raised from the ASGI receive wrapper when a request body exceeds the limit."""


class _BodyLimit:
    """ASGI middleware: refuse a declared Content-Length over the limit at once, and count streamed bytes."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _plain_response(send, 413, f"request body larger than {self.limit} bytes")
            return
        received = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(f"request body larger than {self.limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


async def _plain_response(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class ResultStore:
    """The last ``capacity`` results (report + overlay), by random token; thread-safe."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[dict[str, Any], bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, report: dict[str, Any], picture: bytes) -> str:
        token = secrets.token_hex(16)
        with self._lock:
            self._items[token] = (report, picture)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return token

    def get(self, token: str) -> tuple[dict[str, Any], bytes] | None:
        if not _TOKEN.match(token):
            return None
        with self._lock:
            return self._items.get(token)


def create_app(predictor: Predictor, limits: ServerLimits | None = None,
               arguments: dict[str, Any] | None = None) -> Any:
    """The viewer for ``predictor``; ``arguments`` (how the server was started) go into every report's provenance."""
    require("fastapi", extra="serve", purpose="the web viewer")
    require("python_multipart", extra="serve", purpose="file uploads in the web viewer")
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    limits = limits or ServerLimits.model_validate({})
    store = ResultStore(limits.max_results)
    predict_lock = threading.Lock()
    provenance = predictor.provenance()
    model = {"label": f"{provenance['config'].get('method')} trained on {provenance['trained_on']}, "
                      f"{provenance['ensemble']} model(s), classes {', '.join(predictor.class_names)}",
             "trained_on": provenance["trained_on"]}
    max_mb = limits.max_upload_bytes / (1024 * 1024)
    max_mp = limits.max_pixels / 1e6
    app = FastAPI(title="rlar viewer", docs_url=None, redoc_url=None, openapi_url=None)

    def run_prediction(data: bytes, name: str) -> tuple[dict[str, Any], bytes]:
        with predict_lock:
            result = predictor.predict_one(data, name=name)
        picture = png_bytes(overlay(result.input.frames[result.key_frame], result.key.mask))
        report = build_report(result, predictor, {"command": "serve", **(arguments or {})}, {})
        return report, picture

    async def handle(request: Request) -> tuple[dict[str, Any], bytes, str]:
        try:
            form = await request.form(max_files=1, max_fields=4)
        except BodyTooLarge as err:
            raise UploadRejected(413, str(err)) from None
        except Exception as exc:  # noqa: BLE001 - malformed multipart bodies raise several types
            raise UploadRejected(400, f"malformed upload ({type(exc).__name__})") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadRejected(400, "no file in the form field 'file'")
        data = await upload.read(limits.max_upload_bytes + 1)
        name = display_name(upload.filename)
        check_upload(data, limits, name)
        try:
            report, picture = await run_in_threadpool(run_prediction, data, name)
        except DataError as err:
            raise UploadRejected(400, err.reason) from None
        token = store.add(report, picture)
        report["files"] = {"json": f"/result/{token}.json", "html": f"/result/{token}.html"}
        return report, picture, token

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return index_page(model, max_mb, max_mp)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model["label"]}

    @app.post("/predict", response_class=HTMLResponse)
    async def predict_page(request: Request) -> Response:
        try:
            report, picture, token = await handle(request)
        except UploadRejected as err:
            return HTMLResponse(error_page(err.status, err.message, model, max_mb, max_mp), status_code=err.status)
        return HTMLResponse(result_page(report, picture, token, model, max_mb, max_mp))

    @app.post("/api/predict")
    async def predict_json(request: Request) -> Response:
        try:
            report, _, _ = await handle(request)
        except UploadRejected as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        return JSONResponse(report)

    @app.get("/result/{token}.json")
    def result_json(token: str) -> Response:
        item = store.get(token)
        if item is None:
            return JSONResponse({"error": "unknown or expired result"}, status_code=404)
        return JSONResponse(item[0], headers={"Content-Disposition": "attachment; filename=rlar_report.json"})

    @app.get("/result/{token}.html")
    def result_html(token: str) -> Response:
        item = store.get(token)
        if item is None:
            return HTMLResponse("unknown or expired result", status_code=404)
        return HTMLResponse(render_report_html(*item),
                            headers={"Content-Disposition": "attachment; filename=rlar_report.html"})

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=413)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        # One failing request must never stop the server; the message names the error type only.
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server keeps running"},
                            status_code=500)

    app.add_middleware(_BodyLimit, limit=limits.max_upload_bytes + _FORM_OVERHEAD)
    return app
