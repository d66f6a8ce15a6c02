"""The Open Inference Protocol (KServe / Triton "v2" REST), so their clients work unchanged."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter, Request
from pydantic import TypeAdapter

from ... import __version__
from ...card import ModelCard
from ...errors import ApiError, InputValidationError
from ..schemas import InferRequest, InferResponse, ModelMetadata, ServerMetadata, TensorMetadata
from ..service import (
    JSONBytesResponse,
    ModelService,
    ServiceDep,
    dumps,
    error_responses,
    parse_json,
    require_json,
)

__all__ = ["model_metadata", "router"]

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
_INFER_REQUEST = TypeAdapter(InferRequest)
_NUMBER_TYPES = frozenset(
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
)


def _outputs(card: ModelCard) -> list[TensorMetadata]:
    if card.task == "regression":
        return [TensorMetadata(name="value", datatype="FP32", shape=[-1])]
    return [
        TensorMetadata(name="label", datatype="BYTES", shape=[-1]),
        TensorMetadata(
            name="probabilities",
            datatype="FP32",
            shape=[-1, len(card.classes or ())],
            # The class of each column, in order, as a JSON list (parameters hold scalars).
            parameters={"classes": json.dumps(list(card.classes or ()))},
        ),
    ]


def model_metadata(card: ModelCard) -> ModelMetadata:
    """The model's name, version, and its input and output tensors."""
    inputs = [
        TensorMetadata(
            name=f.name, datatype="BYTES" if f.type == "category" else "FP32", shape=[-1]
        )
        for f in card.features
    ]
    return ModelMetadata(
        name=card.name,
        versions=[card.version],
        platform="onnxruntime_onnx",
        inputs=inputs,
        outputs=_outputs(card),
    )


def _model(service: ModelService, name: str, version: str | None = None) -> ModelCard:
    card = service.card
    if name != card.name or (version is not None and version != card.version):
        wanted = name if version is None else f"{name} version {version}"
        raise ApiError(
            404,
            [
                f"model {wanted[:80]!r} not found; "
                f"this server has {card.name!r} version {card.version!r}"
            ],
        )
    return card


def _columns(
    request: InferRequest, card: ModelCard, max_rows: int
) -> tuple[dict[str, list[Any]], int]:
    """Each feature's values from its tensor, with every problem of names, shapes and types."""
    specs = {f.name: f for f in card.features}
    issues: list[str] = []
    found: dict[str, int] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name not in specs:
            issues.append(
                f"inputs[{i}].name: {tensor.name[:60]!r} is not a model input "
                f"(inputs: {', '.join(specs)})"
            )
        elif tensor.name in found:
            issues.append(f"inputs[{i}].name: {tensor.name!r} is given twice")
        else:
            found[tensor.name] = i
    issues += [f"inputs: missing input {name!r}" for name in specs if name not in found]
    rows: int | None = None
    for name, i in found.items():
        tensor = request.inputs[i]
        expected = "BYTES" if specs[name].type == "category" else "a numeric datatype (e.g. FP32)"
        if (tensor.datatype == "BYTES") != (specs[name].type == "category") or (
            tensor.datatype != "BYTES" and tensor.datatype not in _NUMBER_TYPES
        ):
            issues.append(f"inputs[{i}].datatype: expected {expected}, got {tensor.datatype}")
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            issues.append(f"inputs[{i}].shape: must be [rows] or [rows, 1], got {tensor.shape}")
        size = math.prod(tensor.shape)
        if size != len(tensor.data):
            issues.append(
                f"inputs[{i}].data: {len(tensor.data)} values, "
                f"but shape {tensor.shape} needs {size}"
            )
        if rows is None:
            rows = tensor.shape[0]
        elif tensor.shape[0] != rows:
            issues.append(
                f"inputs[{i}].shape: {tensor.shape[0]} rows, but other inputs have {rows}"
            )
    if not issues and not rows:
        issues.append("inputs: no rows to predict")
    if not issues and rows is not None and rows > max_rows:
        issues.append(f"inputs: {rows} rows, more than this server's limit of {max_rows}")
    if issues:
        raise ApiError(422, issues)
    return {name: request.inputs[i].data for name, i in found.items()}, rows or 0


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name=__name__.split(".")[0], version=__version__, extensions=[])


@router.get("/health/live", summary="Liveness (v2)", responses=error_responses(503, v2=True))
async def live() -> dict[str, bool]:
    """True while the process runs."""
    return {"live": True}


@router.get("/health/ready", summary="Readiness (v2)", responses=error_responses(503, v2=True))
async def ready(request: Request) -> dict[str, bool]:
    """True once the model is loaded and a smoke prediction passed; 503 otherwise."""
    if not request.app.state.service.ready:
        raise ApiError(503, ["model not ready"], {"Retry-After": "1"})
    return {"ready": True}


@router.get(
    "/models/{model_name}",
    response_model=ModelMetadata,
    response_model_exclude_none=True,
    responses=error_responses(404, 503, v2=True),
    summary="Model metadata",
)
async def metadata(model_name: str, service: ServiceDep) -> ModelMetadata:
    """The model's inputs (one tensor per feature) and outputs."""
    return model_metadata(_model(service, model_name))


@router.get(
    "/models/{model_name}/ready",
    responses=error_responses(404, 503, v2=True),
    summary="Model readiness",
)
async def model_ready(model_name: str, service: ServiceDep) -> dict[str, Any]:
    """Whether this model is ready to infer."""
    card = _model(service, model_name)
    return {"name": card.name, "ready": True}


_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}},
    }
}


_INFER = {
    "response_model": InferResponse,
    "responses": error_responses(400, 404, 413, 415, 422, 500, 503, v2=True),
    "openapi_extra": _INFER_BODY,
}


@router.post("/models/{model_name}/infer", summary="Infer (v2)", **_INFER)  # type: ignore[arg-type]
@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    summary="Infer with a given model version (v2)",
    include_in_schema=False,
    **_INFER,  # type: ignore[arg-type]
)
async def infer(
    model_name: str, request: Request, service: ServiceDep, model_version: str | None = None
) -> JSONBytesResponse:
    """One input tensor per feature (`BYTES` for categories, numeric for numbers), `[rows]` or
    `[rows, 1]`; answers the `label` and `probabilities` tensors, or `value` for regression."""
    card = _model(service, model_name, model_version)
    require_json(request)
    parsed: InferRequest = parse_json(_INFER_REQUEST, await request.body())
    columns, rows = _columns(parsed, card, service.schemas.max_rows)
    assert service.model is not None
    assert service.batcher is not None
    try:
        feed = service.model.read(columns)
    except InputValidationError as exc:
        raise ApiError(422, [str(issue) for issue in exc.issues[:20]]) from None
    prediction = await service.batcher.predict(feed, rows)
    service.metrics.predicted(prediction)
    wanted = {o.name for o in parsed.outputs or ()}
    known = {o.name for o in _outputs(card)}
    if wanted - known:
        raise ApiError(
            422,
            [
                f"outputs: unknown output {n[:60]!r} (outputs: {', '.join(sorted(known))})"
                for n in sorted(wanted - known)
            ],
        )
    outputs: list[dict[str, Any]] = []
    if prediction.values is not None:
        outputs.append(
            {"name": "value", "datatype": "FP32", "shape": [rows], "data": prediction.values}
        )
    else:
        assert prediction.labels is not None
        assert prediction.probabilities is not None
        outputs.append(
            {
                "name": "label",
                "datatype": "BYTES",
                "shape": [rows],
                "data": prediction.labels.tolist(),
            }
        )
        shape = list(prediction.probabilities.shape)
        outputs.append(
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": shape,
                "data": prediction.probabilities.ravel(),
            }
        )
    if wanted:
        outputs = [o for o in outputs if o["name"] in wanted]
    answer = {
        "model_name": card.name,
        "model_version": card.version,
        "id": parsed.id,
        "outputs": outputs,
    }
    return JSONBytesResponse(dumps(answer))
