"""`POST /predict`: records keyed by feature name in, labels and probabilities (or values) out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...inference import Prediction
from ..schemas import PredictSchemas
from ..service import (
    ApiError,
    JSONBytesResponse,
    ModelService,
    check_json_content_type,
    dumps,
    error_responses,
    get_service,
    parse_json,
)

__all__ = ["PATH", "build_router", "predict_json", "render"]

PATH = "/predict"


def render(service: ModelService, prediction: Prediction) -> dict[str, Any]:
    """The `/predict` response body for a prediction."""
    card = service.card
    if prediction.values is not None:
        predictions: list[dict[str, Any]] = [{"value": v} for v in prediction.values.tolist()]
    else:
        assert prediction.labels is not None
        assert prediction.probabilities is not None
        classes = card.classes or ()
        predictions = [
            {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(
                prediction.labels.tolist(), prediction.probabilities.tolist(), strict=True
            )
        ]
    return {"model_name": card.name, "model_version": card.version, "predictions": predictions}


async def predict_json(service: ModelService, content_type: str, body: bytes) -> bytes:
    """The whole of `/predict`, from the raw body to the JSON answer; raises `ApiError`.

    The server's middleware calls it directly for `POST /predict`, skipping FastAPI's routing,
    dependency solving and body parsing, which cost more than the model call itself on small
    requests; the FastAPI route below calls the same function, and documents it.
    """
    if not service.ready or service.model is None or service.batcher is None:
        raise ApiError(503, ["model not ready"], {"Retry-After": "1"})
    check_json_content_type(content_type)
    records = parse_json(service.schemas.adapter, body).records
    columns = {name: [record[name] for record in records] for name in service.feature_names}
    prediction = await service.batcher.predict(columns, len(records))
    service.metrics.predicted(prediction)
    return dumps(render(service, prediction))


def build_router(schemas: PredictSchemas) -> APIRouter:
    """The router, its request schema documented from the model card's features."""
    router = APIRouter(tags=["predict"])
    body_schema = {"$ref": f"#/components/schemas/{schemas.request.__name__}"}
    request_body = {"required": True, "content": {"application/json": {"schema": body_schema}}}

    @router.post(
        PATH,
        response_model=schemas.response,
        responses=error_responses(400, 413, 415, 422, 500, 503),
        openapi_extra={"requestBody": request_body},
        summary="Predict a batch of records",
    )
    async def predict(request: Request) -> JSONBytesResponse:
        """Predict each record's label and class probabilities (or value, for regression).

        The body is validated straight from its raw bytes against the model card's features:
        every feature is required (null where the card allows a missing value), categories and
        numeric ranges are enforced, and NaN or infinity is refused.
        """
        service = await get_service(request)
        content_type = request.headers.get("content-type", "")
        return JSONBytesResponse(await predict_json(service, content_type, await request.body()))

    return router
