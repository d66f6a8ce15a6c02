"""Liveness, readiness, the model card and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...settings import ENV_PREFIX
from ..metrics import CONTENT_TYPE_LATEST
from ..schemas import ErrorResponse
from ..service import ApiError, JSONBytesResponse, ServiceDep, dumps, error_responses

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="Liveness", responses=error_responses(503))
async def live() -> dict[str, str]:
    """200 while the process runs; restart the container if this fails."""
    return {"status": "live"}


@router.get("/health/ready", summary="Readiness", responses=error_responses(503))
async def ready(request: Request) -> dict[str, str]:
    """200 once the model is loaded and a smoke prediction passed; send traffic only then."""
    request.app.state.service.serving()
    return {"status": "ready"}


@router.get("/model", summary="The model card", responses=error_responses(503))
async def model_card(service: ServiceDep) -> JSONBytesResponse:
    """What the model expects and what it is: features, classes, metrics, provenance."""
    return JSONBytesResponse(dumps(service.card.model_dump(mode="json")))


@router.get(
    "/model.onnx",
    summary="The ONNX file",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
        304: {"description": "The client's copy (its ETag, the file's sha256) is current"},
        404: {"model": ErrorResponse, "description": "This server does not share its model file"},
        **error_responses(503),
    },
)
async def model_file(request: Request, service: ServiceDep) -> Response:
    """The ONNX file this process serves, as it was checked against the card at start, for
    clients that score it themselves (a browser with onnxruntime-web, say). Off unless
    `model_download` is on."""
    shared = service.model.file if service.model is not None else None
    if shared is None:
        raise ApiError(
            404,
            [
                "this server does not share its model file: start it with "
                f"`serve --model-download` or {ENV_PREFIX}MODEL_DOWNLOAD=true"
            ],
        )
    # no-cache: a browser revalidates its copy by the file's hash, so never scores a stale one.
    etag = f'"{service.card.onnx_sha256}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    wanted = request.headers.get("if-none-match", "")
    if etag in wanted or wanted.strip() == "*":  # RFC 9110: `*` matches any current file
        return Response(status_code=304, headers=headers)
    return Response(shared, media_type="application/octet-stream", headers=headers)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Requests by route and status, latency, rows predicted, predictions by class, model info."""
    body: Any = request.app.state.service.metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
