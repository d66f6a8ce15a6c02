"""`POST /predict`: records keyed by feature name in, labels and probabilities (or values) out."""

from __future__ import annotations

import json
from collections import Counter
from operator import itemgetter
from typing import Any

import orjson
from fastapi import APIRouter, Request

from ...card import ModelCard
from ...errors import ApiError, InputValidationError
from ...inference import Prediction
from ..schemas import PredictSchemas
from ..service import (
    JSONBytesResponse,
    ModelService,
    ServiceDep,
    check_json_content_type,
    dumps,
    error_responses,
)

__all__ = ["PATH", "build_router", "predict_json", "read_records", "render"]

PATH = "/predict"
_LINES = 20  # most problem lines in one answer
_NAME = 60  # longest field name echoed back


def _shown(name: str) -> str:
    return repr(name if len(name) <= _NAME else name[: _NAME - 3] + "...")


def _duplicate_keys(body: bytes) -> list[str]:
    """Keys given twice in one object anywhere in the body (JSON parsers keep the last)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        counts = Counter(key for key, _ in items)
        found.extend(key for key, count in counts.items() if count > 1)
        return dict(items)

    json.loads(body, object_pairs_hook=pairs)
    return found


def read_records(body: bytes, card: ModelCard, max_rows: int) -> dict[str, list[Any]]:
    """The `/predict` body as one list of values per feature; 400 or 422 for a bad envelope.

    Only the envelope is checked here (an object with `records`, a list of 1 to `max_rows`
    objects, each with exactly the card's features, no key twice); the values are the data
    contract's to check, a whole column at a time.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, [f"body is not valid JSON: {str(exc)[:120]}"]) from None
    try:
        return _envelope(body, data, card, max_rows)
    except ApiError as exc:
        # A key given twice may be why the envelope looks wrong (the parser kept the last).
        twice = _duplicate_keys(body) if exc.status == 422 else []
        if twice:
            raise ApiError(
                400, [f"body: key {_shown(k)} is given twice" for k in twice[:_LINES]]
            ) from None
        raise


def _envelope(body: bytes, data: Any, card: ModelCard, max_rows: int) -> dict[str, list[Any]]:
    if type(data) is not dict or "records" not in data:
        raise ApiError(422, ["body: expected an object with a `records` list"])
    if len(data) > 1:
        extra = sorted(k for k in data if k != "records")[:_LINES]
        raise ApiError(422, [f"body: unknown field {_shown(k)}" for k in extra])
    records = data["records"]
    if type(records) is not list or not records:
        raise ApiError(422, ["records: expected a list of at least one record"])
    if len(records) > max_rows:
        raise ApiError(
            422, [f"records: {len(records)} records, more than this server's limit of {max_rows}"]
        )
    if set(map(type, records)) != {dict}:
        index = next(i for i, r in enumerate(records) if type(r) is not dict)
        raise ApiError(422, [f"records[{index}]: expected an object of features"])
    names = card.feature_names
    # Each colon outside a string is one key: as many colons as parsed keys means none was
    # given twice (colons inside strings only add to the count, so they cannot hide one).
    if body.count(b":") != 1 + sum(map(len, records)):
        twice = _duplicate_keys(body)
        if twice:
            raise ApiError(400, [f"body: key {_shown(k)} is given twice" for k in twice[:_LINES]])
    # Every record with as many keys as there are features, and every feature in each: then
    # each has exactly the features. Both run in C, not in a Python loop per record.
    if set(map(len, records)) == {len(names)}:
        try:
            return {name: list(map(itemgetter(name), records)) for name in names}
        except KeyError:
            pass
    wanted = frozenset(names)
    lines: list[str] = []
    for i, record in enumerate(records):
        lines += [f"records[{i}]: missing feature {_shown(n)}" for n in names if n not in record]
        lines += [f"records[{i}]: unknown field {_shown(k)}" for k in record if k not in wanted]
        if len(lines) >= _LINES:
            break
    raise ApiError(422, lines[:_LINES])


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
    """The whole of `/predict`, from the raw body to the JSON answer; raises `ApiError`."""
    if not service.ready or service.model is None or service.batcher is None:
        raise ApiError(503, ["model not ready"], {"Retry-After": "1"})
    check_json_content_type(content_type)
    columns = read_records(body, service.card, service.schemas.max_rows)
    try:
        feed = service.model.read(columns, row_label="record")
    except InputValidationError as exc:
        raise ApiError(422, [str(issue) for issue in exc.issues[:_LINES]]) from None
    rows = len(columns[service.feature_names[0]])
    prediction = await service.batcher.predict(feed, rows)
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
    async def predict(request: Request, service: ServiceDep) -> JSONBytesResponse:
        """Predict each record's label and class probabilities (or value, for regression).

        Every feature is required (null where the card allows a missing value), categories and
        numeric ranges are enforced, and NaN or infinity is refused: the data contract checks
        each column of the batch at once, with the same rules and messages as `prepare`.
        """
        content_type = request.headers.get("content-type", "")
        return JSONBytesResponse(await predict_json(service, content_type, await request.body()))

    return router
