"""One pure-ASGI middleware for what every request needs, in the app's middleware stack.

It gives each request an id, reads any body, whatever the method, within a deadline (408), a
size limit (413, with or without a Content-Length header) and a cap on the bytes held for all
bodies being received at once (503), answers 503 at once when the requests being handled reach
the concurrency limit, counts and times every response for Prometheus, and logs errors (never
bodies or values). It is added with `app.add_middleware`, like any other, so it applies to
every route, the plain ASGI endpoints of `/predict` and v2 infer included.

Only requests whose body has arrived count towards the limit: a slow upload holds a
connection, not the model. Readiness, liveness, metrics and files are never refused for load.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batching import InFlight
from .metrics import ServingMetrics
from .service import error_body

__all__ = ["ServingMiddleware"]

log = logging.getLogger(__name__.rsplit(".", 1)[0])
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
_ALWAYS_ANSWERED = frozenset(
    {"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/metrics"}
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Files (Swagger UI, the demo's runtime) are streamed: never refused for load, never counted.
_FILES = ("/static/", "/model.onnx")


class ServingMiddleware:
    """Request ids, body deadline and size limit, concurrency limit, metrics and error logs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        inflight: InFlight,
        max_body_bytes: int,
        max_buffered_bytes: int,
        max_concurrency: int,
        body_timeout: float,
        routes: Sequence[BaseRoute] = (),
        log_requests: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.buffered = 0  # bytes of bodies being received, across every connection
        self.max_concurrency = max_concurrency
        self.body_timeout = body_timeout
        self.log_requests = log_requests
        self.inflight = inflight
        self.routes = routes
        self.overloaded = 0  # 503s since the last line that reported them
        self.overload_logged = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 500
        overload = False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        async def fail(code: int, detail: list[str], *headers: tuple[bytes, bytes]) -> None:
            body = error_body(detail, request_id, scope["path"])
            base = (
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            )
            start_message = {
                "type": "http.response.start",
                "status": code,
                "headers": [*base, *headers],
            }
            await send_with_id(start_message)
            await send_with_id({"type": "http.response.body", "body": body})

        path, method = scope["path"], scope["method"]
        if method == "HEAD":  # answered as GET; the server sends the headers, not the body
            scope = {**scope, "method": "GET"}
        try:
            if method in _BODY_METHODS or _declares_body(scope):
                self.metrics.receiving.inc()
                held = [0]  # this body's bytes, counted in `self.buffered` while it is read
                try:
                    async with asyncio.timeout(self.body_timeout):
                        body = await self._read_body(scope, receive, held)
                except TimeoutError:
                    limit = f"request body not received within {self.body_timeout:g} s"
                    await fail(408, [limit], (b"connection", b"close"))
                    return
                except _BufferFullError:
                    scope["route"] = self._route(scope)
                    overload = True
                    busy = "server busy receiving other requests; retry shortly"
                    await fail(503, [busy], (b"retry-after", b"1"), (b"connection", b"close"))
                    return
                finally:
                    self.metrics.receiving.dec()
                    self.buffered -= held[0]
                if body is None:
                    limit = f"request body larger than {self.max_body_bytes} bytes"
                    await fail(413, [limit], (b"connection", b"close"))
                    return
                receive = _replay(body, receive)
            if path in _ALWAYS_ANSWERED or path.startswith(_FILES):
                await self.app(scope, receive, send_with_id)  # never refused, never counted
                return
            if self.inflight.count >= self.max_concurrency:
                self.metrics.rejected.inc()
                scope["route"] = self._route(scope)  # for the metrics: refused before routing
                overload = True
                await fail(503, ["server overloaded; retry shortly"], (b"retry-after", b"1"))
                return
            self.inflight.count += 1
            self.metrics.inflight.inc()
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self.inflight.count -= 1
                self.metrics.inflight.dec()
        finally:
            self._finish(scope, method, status, start, request_id, overload)

    async def _read_body(self, scope: Scope, receive: Receive, held: list[int]) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit; `_BufferFullError`
        when it would take the bytes held for all requests' bodies past their cap."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            if self.buffered + len(chunk) > self.max_buffered_bytes:
                raise _BufferFullError
            self.buffered += len(chunk)
            held[0] += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _finish(
        self,
        scope: Scope,
        method: str,
        status: int,
        start: float,
        request_id: str,
        overload: bool = False,
    ) -> None:
        seconds = time.perf_counter() - start
        # A FastAPI route names itself; another matched route (/docs, /openapi.json) by its
        # path; anything else is one label, so that no client can add label values at will.
        route = getattr(scope.get("route"), "path", None) or (
            (scope.get("root_path") or scope["path"]) if "endpoint" in scope else "unmatched"
        )  # a mount (/static) by its own path, so that no client can add label values at will
        self.metrics.observe(method, route, status, seconds)
        if overload and not self.log_requests:
            # A burst of overload is one line a second, with its count, not one per request.
            self.overloaded += 1
            now = time.monotonic()
            if now - self.overload_logged < 1:
                return
            log.warning("requests refused for overload", extra={"count": self.overloaded})
            self.overloaded, self.overload_logged = 0, now
            return
        if status >= 500 or self.log_requests or (status >= 400 and log.isEnabledFor(logging.INFO)):
            # Overload (503) is the server protecting itself, not a fault: a warning.
            level = logging.ERROR if status >= 500 and status != 503 else logging.WARNING
            level = level if status >= 500 else logging.INFO
            fields: dict[str, Any] = {
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
            log.log(level, "request", extra=fields)

    def _route(self, scope: Scope) -> BaseRoute | None:
        """The route a request would have reached (a 503 is answered before routing)."""
        for route in self.routes:
            if route.matches(scope)[0] is Match.FULL:
                return route
        return None


class _BufferFullError(Exception):
    pass


def _declares_body(scope: Scope) -> bool:
    """Whether a request says a body follows, whatever its method."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _REQUEST_ID.match(value):
            return str(value.decode())
    return os.urandom(12).hex()


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as Starlette expects

    return replay
