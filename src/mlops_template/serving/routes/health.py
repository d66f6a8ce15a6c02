"""Liveness, readiness, the model card and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..metrics import CONTENT_TYPE_LATEST
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
    if not request.app.state.service.ready:
        raise ApiError(503, ["model not ready"], {"Retry-After": "1"})
    return {"status": "ready"}


@router.get("/model", summary="The model card", responses=error_responses(503))
async def model_card(service: ServiceDep) -> JSONBytesResponse:
    """What the model expects and what it is: features, classes, metrics, provenance."""
    return JSONBytesResponse(dumps(service.card.model_dump(mode="json")))


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
