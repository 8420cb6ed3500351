"""The FastAPI app of ``boxloop serve``: the Label Studio ML backend routes over a
:class:`~boxloop.server.service.Service`.

    GET  /health    {"status": "UP"}                      (open, even with basic auth)
    POST /setup     labeling config check → {"model_version"}
    POST /predict   {"tasks": [...]} → {"results": [one entry per task], "model_version"}
    POST /webhook   annotation events → 201; retraining after [serve] train_every of them
    POST /train     Label Studio's "Start training" (without the webhook feature flag)
    GET  /status    model, job state, counters, last evaluation

With basic auth set, every route but /health answers 401 without the right credentials.
Request bodies over ``max_body_bytes`` get 413 before they are read. Errors are JSON
``{"error": "..."}``: never a stack trace, never a token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..errors import BackendError, BoxloopError, ConfigError, InputError, SyncError
from .images import ImageRefused
from .service import NoModelError, Service

__all__ = ["BodyTooLarge", "create_app", "error_status", "parse_basic_auth"]

log = logging.getLogger(__name__)


class BodyTooLarge(InputError):
    """A request body over the configured limit."""


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ImageRefused, 403),
    (BodyTooLarge, 413),
    (NoModelError, 503),
    (InputError, 400),
    (SyncError, 502),
    (ConfigError, 500),
    (BackendError, 500),
    (BoxloopError, 500),
)


def error_status(exc: BaseException) -> int:
    """The HTTP status of a BoxloopError."""
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


def parse_basic_auth(text: str | None) -> tuple[str, str] | None:
    """``"USER:PASS"`` → (user, password); None for no auth; an InputError for anything else."""
    if text is None or text == "":
        return None
    user, sep, password = str(text).partition(":")
    if not sep or not user or not password:
        raise InputError("--basic-auth expects USER:PASS (both non-empty)")
    return user, password


class _BasicAuth:
    """Pure ASGI middleware: every path but /health needs the credentials."""

    def __init__(self, app: Any, credentials: tuple[str, str]) -> None:
        self.app = app
        self.user = credentials[0].encode()
        self.password = credentials[1].encode()

    def _ok(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        same_user = hmac.compare_digest(user, self.user)
        same_password = hmac.compare_digest(password, self.password)
        return bool(sep) and same_user and same_password

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") != "/health":
            headers = dict(scope.get("headers") or [])
            if not self._ok(headers.get(b"authorization", b"")):
                response = JSONResponse(
                    {"error": "authentication required (HTTP basic auth)"}, status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="boxloop"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(service: Service, *, basic_auth: tuple[str, str] | None = None) -> Any:
    """The ASGI app for ``service`` (run it with uvicorn)."""
    limit = int(service.cfg.max_body_bytes)
    app = FastAPI(title="boxloop ML backend", docs_url=None, redoc_url=None, openapi_url=None)

    async def read_json(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise InputError("a malformed Content-Length header")
            if int(length) > limit:
                raise BodyTooLarge(f"the request body ({length} bytes) is over the limit of {limit} bytes ([serve] max_body_bytes)")
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise BodyTooLarge(f"the request body is over the limit of {limit} bytes ([serve] max_body_bytes)")
        if not buf:
            raise InputError("an empty request body; expected a JSON object")
        try:
            body = json.loads(bytes(buf))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"the request body is not JSON ({type(e).__name__})") from None
        if not isinstance(body, dict):
            raise InputError("the request body must be a JSON object")
        return body

    @app.exception_handler(BoxloopError)
    async def _boxloop_error(_request: Request, exc: BoxloopError) -> JSONResponse:
        status = error_status(exc)
        text = service.redact(str(exc))
        if status >= 500:
            log.warning("%s: %s", type(exc).__name__, text)
        return JSONResponse({"error": text}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, status_code=400)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # the trace goes to the server log (Starlette re-raises to uvicorn), never to the client
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"error": "internal error; see the server log"}, status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "UP"}

    @app.post("/setup")
    async def setup(request: Request) -> dict[str, Any]:
        return service.setup(await read_json(request))

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        return await run_in_threadpool(service.predict, body)

    @app.post("/webhook", status_code=201)
    async def webhook(request: Request) -> dict[str, Any]:
        return service.webhook(await read_json(request))

    @app.post("/train", status_code=201)
    async def train(request: Request) -> dict[str, Any]:
        return service.train(await read_json(request))

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return await run_in_threadpool(service.status)

    if basic_auth is not None:
        app.add_middleware(_BasicAuth, credentials=basic_auth)
    return app
