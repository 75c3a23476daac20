"""The FastAPI application of ``rlar serve``.

Routes: ``GET /`` upload form; ``POST /predict`` (multipart field ``file``) result page; ``POST /api/predict`` the
JSON report; ``GET /result/<token>.json|.html`` downloads of a recent result; ``GET /health``.

Robustness: the request body is counted as it arrives and refused past ``max_upload_bytes`` (413), whatever the
client claims; the upload is checked by content and by the pixel count of every frame's header before decoding
(:mod:`.uploads`); the multipart body is parsed in memory (never spooled to a temporary file) and images are
decoded from memory; results are kept in a bounded in-memory store keyed by a random token, so nothing a user
sends names a file on disk. Every failure of one request becomes a 4xx/5xx answer; the server keeps serving.
Predictions run one at a time (a lock) so concurrent uploads cannot multiply memory use.

Who may talk to it (:class:`_Guard`, outermost, before any body is read): only requests whose ``Host`` header
names one of the host names the server was started for (loopback names by default; DNS rebinding gives a
foreign page a foreign Host), and, when the browser says where the request comes from (``Origin``,
``Sec-Fetch-Site``), only same-origin requests; anything else gets 403. Every response carries nosniff, frame
and content-security headers, and one log line (``rlar.serving`` logger). Reports leave the server without
local paths or the training configuration (:func:`public_report`).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations at run time, and
# they name classes imported inside the functions that add them (_add_upload_routes, _add_error_handlers).
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit

from rlar._optional import require
from rlar.data.io import TooManyPixels
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


#: Host names a server accepts when it is not told others: this machine's loopback names.
LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")

#: Headers on every response. The pages have no scripts and no external resources: styles are inline, the
#: overlay is a data: image, the form posts to this server. Nothing may frame the viewer (clickjacking), no
#: other origin may read its responses as resources, results are never cached.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    # "same-origin", not "no-referrer": under no-referrer browsers send "Origin: null" with the form's own POST.
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOG = logging.getLogger("rlar.serving")
_TOKEN_IN_PATH = re.compile(r"/result/[0-9a-f]{32}")


def _host_and_port(value: str, default_port: int | None) -> tuple[str, int | None]:
    """("name", port) of a Host header value or URL netloc: ``[::1]:8000``, ``localhost``, ``127.0.0.1:80``."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port_text = value.partition(":")
    else:
        name, port_text = value, ""  # no port, or a bare IPv6 address
    port = int(port_text) if port_text.isdigit() else default_port
    return name.rstrip("."), port


class _Guard:
    """ASGI middleware: Host and same-origin checks (403), security headers and one log line per request."""

    def __init__(self, app: Any, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(_host_and_port(h, None)[0] for h in allowed_hosts)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 0, "bytes": 0}

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS if k.encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif message["type"] == "http.response.body":
                status["bytes"] += len(message.get("body", b""))
            await send(message)

        refusal = self.refusal(scope)
        try:
            if refusal is not None:
                await _plain_response(guarded_send, 403, refusal)
            else:
                await self.app(scope, receive, guarded_send)
        finally:
            client = scope.get("client") or ("-", 0)
            path = _TOKEN_IN_PATH.sub("/result/<token>", scope.get("path", ""))
            _LOG.info('%s "%s %s" %s %d bytes %.0f ms%s', client[0], scope.get("method", ""), path[:200],
                      status["code"] or "-", status["bytes"], (time.perf_counter() - start) * 1000,
                      f" (refused: {refusal})" if refusal else "")

    def refusal(self, scope: dict[str, Any]) -> str | None:
        """Why this request is refused (403), or None: a foreign Host, a foreign Origin, a cross-site fetch."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        scheme = scope.get("scheme", "http")
        default_port = 443 if scheme == "https" else 80
        host = headers.get("host", "")
        name, port = _host_and_port(host, default_port)
        if name not in self.allowed:
            return (f"host name {name[:100]!r} is not one this server was started for "
                    f"({', '.join(sorted(self.allowed))}); to accept it, start rlar serve with --allow-host NAME")
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin.strip())
            origin_port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
            same = (parts.scheme == scheme and (parts.hostname or "").rstrip(".") == name and origin_port == port)
            if not same:  # "null" (sandboxed frames, file: pages) has no host and is refused too
                return f"cross-origin request from {origin[:100]!r} refused: only pages of this server may call it"
        fetch_site = headers.get("sec-fetch-site")
        if scope.get("method", "GET") not in _SAFE_METHODS and fetch_site not in (None, "same-origin", "none"):
            return f"{fetch_site} request refused: only pages of this server may send uploads"
        return None


def public_report(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` as it may leave the server: no local paths, no training configuration, no start arguments.

    The provenance keeps what identifies the model (versions, weight hashes, folds, preprocessing, what it was
    trained on); checkpoints are named by file name only.
    """
    provenance = dict(report.get("provenance") or {})
    kept = {key: provenance[key] for key in ("rlar_version", "torch_version", "ensemble", "model_id", "tta",
                                             "mask_postprocess", "crop", "preprocessing", "network_input_hw",
                                             "label_space", "trained_on", "created_utc") if key in provenance}
    kept["models"] = [{"checkpoint": PurePath(str(m.get("checkpoint", ""))).name, "sha256": m.get("sha256"),
                       "fold": m.get("fold"), "epoch": m.get("epoch")} for m in provenance.get("models", [])]
    arguments = provenance.get("arguments") or {}
    kept["arguments"] = {key: arguments[key] for key in ("command", "tta", "folds") if key in arguments}
    return {**report, "provenance": kept}


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
            message: dict[str, Any] = await receive()
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


def _model_summary(predictor: Predictor) -> dict[str, Any]:
    """How the pages and ``/health`` name the model: method, training data, ensemble size and classes."""
    provenance = predictor.provenance()
    return {"label": f"{provenance['config'].get('method')} trained on {provenance['trained_on']}, "
                     f"{provenance['ensemble']} model(s), classes {', '.join(predictor.class_names)}",
            "trained_on": provenance["trained_on"]}


class _Viewer:
    """What the routes of one app share: the predictor (one prediction at a time), the limits, the result store
    and the model summary the pages show; and the upload handling common to the page and the JSON route."""

    def __init__(self, predictor: Predictor, limits: ServerLimits, arguments: dict[str, Any] | None) -> None:
        self.predictor = predictor
        self.limits = limits
        self.arguments = arguments
        self.store = ResultStore(limits.max_results)
        self.predict_lock = threading.Lock()
        self.model = _model_summary(predictor)
        self.max_mb = limits.max_upload_bytes / (1024 * 1024)
        self.max_mp = limits.max_pixels / 1e6

    def page_context(self) -> tuple[dict[str, Any], float, float, int]:
        """The arguments every page takes after its own: model summary, upload limits (MB, MP), results kept."""
        return self.model, self.max_mb, self.max_mp, self.limits.max_results

    def run_prediction(self, data: bytes, name: str) -> tuple[dict[str, Any], bytes]:
        """Predict one upload (under the lock); return its public report and the overlay PNG."""
        with self.predict_lock:
            result = self.predictor.predict_one(data, name=name)
        picture = png_bytes(overlay(result.input.frames[result.key_frame], result.key.mask))
        report = build_report(result, self.predictor, {**(self.arguments or {}), "command": "serve"}, {})
        return public_report(report), picture

    async def read_form(self, request: Any) -> Any:
        """The multipart form, parsed in memory: the file part is never spooled to a temporary file."""
        from starlette.formparsers import MultiPartParser

        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise UploadRejected(400, "expected a multipart/form-data upload with the image in the field 'file'")
        parser = MultiPartParser(request.headers, request.stream(), max_files=1, max_fields=4)
        # Starlette spools file parts over 1 MB to disk; the body limit (_BodyLimit) is below this threshold,
        # so the whole upload stays in memory, as the page promises.
        parser.spool_max_size = self.limits.max_upload_bytes + 2 * _FORM_OVERHEAD
        return await parser.parse()

    async def handle(self, request: Any) -> tuple[dict[str, Any], bytes, str]:
        """Read, check and predict one upload; store the result. Returns (report with its download links,
        overlay PNG, token). Every problem with the upload is an UploadRejected carrying the HTTP status."""
        from starlette.concurrency import run_in_threadpool

        try:
            form = await self.read_form(request)
        except UploadRejected:
            raise
        except BodyTooLarge as err:
            raise UploadRejected(413, str(err)) from None
        except Exception as exc:  # noqa: BLE001 - malformed multipart bodies raise several types
            raise UploadRejected(400, f"malformed upload ({type(exc).__name__})") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadRejected(400, "no file in the form field 'file'")
        data = await upload.read(self.limits.max_upload_bytes + 1)
        name = display_name(upload.filename)
        check_upload(data, self.limits, name)
        try:
            report, picture = await run_in_threadpool(self.run_prediction, data, name)
        except TooManyPixels as err:
            raise UploadRejected(413, err.reason) from None
        except DataError as err:
            raise UploadRejected(400, err.reason) from None
        token = self.store.add(report, picture)
        report["files"] = {"json": f"/result/{token}.json", "html": f"/result/{token}.html"}
        return report, picture, token


def _add_upload_routes(app: Any, viewer: _Viewer) -> None:
    """``GET /`` (the form), ``GET /health``, ``POST /predict`` (result page) and ``POST /api/predict`` (JSON)."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return index_page(*viewer.page_context())

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": viewer.model["label"]}

    @app.post("/predict", response_class=HTMLResponse)
    async def predict_page(request: Request) -> Response:
        try:
            report, picture, token = await viewer.handle(request)
        except UploadRejected as err:
            return HTMLResponse(error_page(err.status, err.message, *viewer.page_context()), status_code=err.status)
        return HTMLResponse(result_page(report, picture, token, *viewer.page_context()))

    @app.post("/api/predict")
    async def predict_json(request: Request) -> Response:
        try:
            report, _, _ = await viewer.handle(request)
        except UploadRejected as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        return JSONResponse(report)


def _add_result_routes(app: Any, store: ResultStore) -> None:
    """``GET /result/<token>.json|.html``: downloads of a recent result (404 once it left the store)."""
    from fastapi.responses import HTMLResponse, JSONResponse, Response

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


def _add_error_handlers(app: Any) -> None:
    """A body over the limit raised inside the app -> 413; any other exception -> 500, and the server keeps serving."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=413)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        # One failing request must never stop the server; the message names the error type only.
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server keeps running"},
                            status_code=500)


def create_app(predictor: Predictor, limits: ServerLimits | None = None,
               arguments: dict[str, Any] | None = None, allowed_hosts: Iterable[str] = LOOPBACK_HOSTS) -> Any:
    """The viewer for ``predictor``.

    ``arguments`` (how the server was started: command, tta, folds) go into every report's provenance (without
    the model's path); ``allowed_hosts``: the host names requests may address (their ``Host`` header), by
    default this machine's loopback names.
    """
    require("fastapi", extra="serve", purpose="the web viewer")
    require("python_multipart", extra="serve", purpose="file uploads in the web viewer")
    from fastapi import FastAPI

    limits = limits or ServerLimits.model_validate({})
    viewer = _Viewer(predictor, limits, arguments)
    app = FastAPI(title="rlar viewer", docs_url=None, redoc_url=None, openapi_url=None)
    _add_upload_routes(app, viewer)
    _add_result_routes(app, viewer.store)
    _add_error_handlers(app)
    app.add_middleware(_BodyLimit, limit=limits.max_upload_bytes + _FORM_OVERHEAD)
    app.add_middleware(_Guard, allowed_hosts=allowed_hosts)  # added last: outermost, before any body is read
    return app


def log_requests(stream: Any = None) -> None:
    """Print the viewer's one line per request (``rlar.serving`` logger) to ``stream`` (default stderr)."""
    for old in [h for h in _LOG.handlers if getattr(h, "rlar_requests", False)]:
        _LOG.removeHandler(old)  # one handler however often a server is started in this process
    handler = logging.StreamHandler(stream)
    handler.rlar_requests = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    _LOG.addHandler(handler)
    _LOG.setLevel(logging.INFO)
    _LOG.propagate = False
