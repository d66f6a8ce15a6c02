"""One pure-ASGI middleware for what every request needs, kept off FastAPI's slower layers.

It gives each request an id, refuses bodies over the size limit (413, with or without a
Content-Length header), answers 503 at once past the concurrency limit, counts and times every
response for Prometheus, and logs errors (never bodies or values).

It also answers the hot routes (`POST /predict`) itself, calling the same function as their
FastAPI route: on a one-row request, FastAPI's routing and dependency layers cost more than the
model. FastAPI still owns every other route, the OpenAPI schema and `/docs`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ApiError, ModelOutputError
from .batching import InFlight
from .metrics import ServingMetrics
from .service import error_body

__all__ = ["FastRoute", "ServingMiddleware"]

FastRoute = Callable[[Scope, bytes], Awaitable[bytes]]
"""A handler for one (method, path) that the middleware answers itself: raw body in, JSON out."""

log = logging.getLogger(__name__.rsplit(".", 1)[0])
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
_ALWAYS_ANSWERED = frozenset({"/health/live", "/v2/health/live", "/metrics"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ServingMiddleware:
    """Request ids, body size and concurrency limits, metrics and error logs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        fast_routes: dict[tuple[str, str], FastRoute] | None = None,
        metrics: ServingMetrics,
        inflight: InFlight,
        max_body_bytes: int,
        max_concurrency: int,
        log_requests: bool = False,
    ) -> None:
        self.app = app
        self.fast_routes = fast_routes or {}
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_concurrency = max_concurrency
        self.log_requests = log_requests
        self.inflight = inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        async def reply(
            code: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
        ) -> None:
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

        async def fail(
            code: int, detail: list[str], headers: tuple[tuple[bytes, bytes], ...] = ()
        ) -> None:
            await reply(code, error_body(detail, request_id, scope["path"]), headers)

        path, method = scope["path"], scope["method"]
        if method == "HEAD":  # answered as GET; the server sends the headers, not the body
            scope = {**scope, "method": "GET"}
        if self.inflight.count >= self.max_concurrency and path not in _ALWAYS_ANSWERED:
            self.metrics.rejected.inc()
            await fail(503, ["server overloaded; retry shortly"], ((b"retry-after", b"1"),))
            self._finish(scope, method, status, start, request_id)
            return
        self.inflight.count += 1
        self.metrics.inflight.inc()
        try:
            if method in _BODY_METHODS:
                body = await self._read_body(scope, receive)
                if body is None:
                    limit = f"request body larger than {self.max_body_bytes} bytes"
                    await fail(413, [limit], ((b"connection", b"close"),))
                    return
                handler = self.fast_routes.get((method, path))
                if handler is not None:
                    scope["route"] = _FastRouteLabel(path)
                    try:
                        await reply(200, await handler(scope, body))
                    except ApiError as exc:
                        headers = tuple(
                            (k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()
                        )
                        await fail(exc.status, exc.detail, headers)
                    except ModelOutputError as exc:
                        log.error("model output not finite", extra={"request_id": request_id})
                        await fail(500, [str(exc)])
                    except Exception:
                        log.exception("unhandled error", extra={"request_id": request_id})
                        await fail(500, ["internal server error"])
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
        finally:
            self.inflight.count -= 1
            self.metrics.inflight.dec()
            self._finish(scope, method, status, start, request_id)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
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
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _finish(
        self, scope: Scope, method: str, status: int, start: float, request_id: str
    ) -> None:
        seconds = time.perf_counter() - start
        # A FastAPI route names itself; another matched route (/docs, /openapi.json) by its
        # path; anything else is one label, so that no client can add label values at will.
        route = getattr(scope.get("route"), "path", None) or (
            scope["path"] if "endpoint" in scope else "unmatched"
        )
        self.metrics.observe(method, route, status, seconds)
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


class _FastRouteLabel:
    """Stands in for a Starlette route in `scope["route"]`, for the metrics' route label."""

    def __init__(self, path: str) -> None:
        self.path = path


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
