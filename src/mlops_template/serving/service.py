"""What the routes share: the loaded model, its schemas, the batcher, the metrics, and errors."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from ..card import ModelCard
from ..errors import ApiError
from ..inference import OnnxModel
from .batching import InFlight, MicroBatcher
from .metrics import ServingMetrics
from .schemas import ErrorResponse, InferErrorResponse, PredictSchemas

__all__ = [
    "MAX_LINES",
    "UNREADABLE_JSON",
    "V2_PREFIX",
    "ApiError",
    "JSONBytesResponse",
    "ModelService",
    "ServiceDep",
    "check_json_content_type",
    "dumps",
    "duplicate_keys",
    "error_body",
    "error_responses",
    "get_service",
    "header",
    "invalid",
    "openapi_errors",
    "read_body",
    "read_json",
    "refuse_duplicate_keys",
    "require_json",
    "send_answer",
    "shown",
]


@dataclass
class ModelService:
    """The loaded model and what serves it; one per process, built by the app's lifespan."""

    card: ModelCard
    schemas: PredictSchemas
    metrics: ServingMetrics
    inflight: InFlight
    model: OnnxModel | None = None
    batcher: MicroBatcher | None = None
    ready: bool = False

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's inputs, in order."""
        return self.card.feature_names

    def serving(self) -> tuple[OnnxModel, MicroBatcher]:
        """The model and its batcher once the model is loaded and has passed its smoke test;
        until then a 503 that asks the client to retry."""
        if not self.ready or self.model is None or self.batcher is None:
            raise ApiError(503, ["model not ready"], {"Retry-After": "1"})
        return self.model, self.batcher


class JSONBytesResponse(Response):
    """A response whose body is already JSON bytes (made by orjson)."""

    media_type = "application/json"


async def get_service(request: Request) -> ModelService:
    """The process's model service, once the model is loaded and has passed its smoke test."""
    service: ModelService = request.app.state.service
    service.serving()
    return service


ServiceDep = Annotated[ModelService, Depends(get_service)]

_MESSAGES = {
    400: "Malformed request (the body is not JSON)",
    404: "No such model",
    413: "Request body too large",
    415: "Content-Type is not application/json",
    422: "The request breaks the model's schema; one line per problem, naming the row and field",
    500: "Internal error (the model produced a non-finite value, or a bug)",
    503: "Overloaded or not ready; retry after the Retry-After seconds",
}


def error_responses(*codes: int, v2: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses: the `ErrorResponse` body, or for the
    Open Inference Protocol its own `{"error": ...}` (`InferErrorResponse`)."""
    model = InferErrorResponse if v2 else ErrorResponse
    return {code: {"model": model, "description": _MESSAGES[code]} for code in codes}


def openapi_errors(*codes: int, v2: bool = False) -> dict[str, dict[str, Any]]:
    """`error_responses` as an OpenAPI document writes them, for the routes that are plain
    ASGI endpoints (FastAPI documents only its own routes)."""
    model = InferErrorResponse if v2 else ErrorResponse
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        str(code): {
            "description": _MESSAGES[code],
            "content": {"application/json": {"schema": schema}},
        }
        for code in codes
    }


def header(scope: Scope, name: bytes) -> str:
    """A request header's value ('' when absent), from an ASGI scope."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


async def read_body(receive: Receive) -> bytes:
    """A request's whole body (the serving middleware has read it already: one message)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_answer(
    send: Send, body: bytes, media_type: bytes = b"application/json", *headers: tuple[bytes, bytes]
) -> None:
    """Send a 200 answer whose body is ready, from an ASGI endpoint."""
    base = [(b"content-type", media_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": [*base, *headers]})
    await send({"type": "http.response.body", "body": body})


def require_json(request: Request) -> None:
    """Refuse a body that does not say it is JSON."""
    check_json_content_type(request.headers.get("content-type", ""))


def check_json_content_type(content_type: str) -> None:
    """Raise 415 when `content_type` names something other than JSON.

    `application/json` and `application/*+json` are JSON; so is a body with no Content-Type
    at all, as the stock Open Inference Protocol clients (Triton's) send it.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if (
        kind
        and kind != "application/json"
        and not (kind.startswith("application/") and kind.endswith("+json"))
    ):
        raise ApiError(
            415, [f"Content-Type must be application/json, not {kind[:60] or 'missing'!r}"]
        )


def read_json(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """Decode a raw body with msgspec: 400 if it is not JSON, 422 naming where it breaks the
    decoder's type (msgspec stops at the first problem), or a key given twice."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        refuse_duplicate_keys(body)  # a key given twice may be why (the parser kept the last)
        raise invalid(exc) from None
    except UNREADABLE_JSON as exc:
        raise ApiError(400, [f"body is not valid JSON: {str(exc)[:120]}"]) from None


def invalid(exc: msgspec.ValidationError) -> ApiError:
    """422 for msgspec's message, led by where in the body it is (`inputs[0].shape`)."""
    message, _, where = str(exc).partition(" - at `$")
    line = f"{where.rstrip('`').lstrip('.') or 'body'}: {message}"
    return ApiError(422, [line if len(line) <= _LINE else line[: _LINE - 3] + "..."])


V2_PREFIX = "/v2"
_NAME = 60  # longest field name echoed back
MAX_LINES = 20  # most problem lines in one answer
_LINE = 200  # longest line quoted from msgspec (it echoes a field name whole)
# What a JSON parser raises for a body it cannot read (invalid UTF-8 and deep nesting included).
UNREADABLE_JSON = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def error_body(detail: list[str], request_id: str | None, path: str = "") -> bytes:
    """The JSON of every error response: `{"detail": [...], "request_id": ...}`, or under
    `/v2` the Open Inference Protocol's `{"error": "..."}`, which its clients decode."""
    if len(detail) > MAX_LINES:  # however many problems a request has, the answer stays small
        detail = [*detail[:MAX_LINES], f"... and {len(detail) - MAX_LINES} more"]
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        return orjson.dumps({"error": "; ".join(detail)})
    return orjson.dumps({"detail": detail, "request_id": request_id})


def shown(name: str) -> str:
    """A field name as an error line quotes it, cut to a readable length."""
    return repr(name if len(name) <= _NAME else name[: _NAME - 3] + "...")


def duplicate_keys(body: bytes) -> list[str]:
    """Keys given twice in one object anywhere in the body (JSON parsers keep the last)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        counts = Counter(key for key, _ in items)
        found.extend(key for key, count in counts.items() if count > 1)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except RecursionError:  # nested deeper than Python's parser goes: no key to name
        return []
    return found


def refuse_duplicate_keys(body: bytes) -> None:
    """400 naming each key given twice in one object (the parsers kept only the last)."""
    try:
        twice = duplicate_keys(body)
    except ValueError as exc:  # what msgspec stopped before reaching: not UTF-8, say
        raise ApiError(400, [f"body is not valid JSON: {str(exc)[:120]}"]) from None
    if twice:
        raise ApiError(400, [f"body: key {shown(k)} is given twice" for k in twice[:MAX_LINES]])


def dumps(content: Any) -> bytes:
    """JSON bytes, numpy arrays included."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
