"""The Open Inference Protocol (KServe / Triton "v2" REST), so their clients work unchanged."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from msgspec import UNSET
from starlette.types import Receive, Scope, Send

from ... import __version__
from ...card import ModelCard
from ...errors import ApiError, InputValidationError
from ...inference import Prediction
from ..schemas import (
    NUMERIC_DATATYPES,
    InferBody,
    InferOutput,
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
    output_names,
)
from ..service import (
    MAX_LINES,
    ModelService,
    ServiceDep,
    check_json_content_type,
    dumps,
    error_responses,
    header,
    invalid,
    openapi_errors,
    read_body,
    read_json,
    refuse_duplicate_keys,
    send_answer,
)
from . import binary

__all__ = ["PREFIX", "InferEndpoint", "model_metadata", "openapi_path", "read_request", "router"]

PREFIX = "/v2"
router = APIRouter(prefix=PREFIX, tags=["open inference protocol (v2)"])
_DECODER = msgspec.json.Decoder(InferBody)


def read_request(header: bytes) -> InferBody:
    """The request's JSON envelope; 400 if it is not JSON or gives a key twice in one object,
    422 naming where it breaks the protocol."""
    try:
        body: InferBody = read_json(_DECODER, header)
    except ApiError as exc:
        if exc.status != 400:
            raise
        body = _read_with_non_finite_numbers(header)
    # As many colons as keys read: none was given twice (a colon in a string only adds to the
    # count, and sends the body to the full check).
    if header.count(b":") != _keys(body):
        refuse_duplicate_keys(header)
    return body


def _read_with_non_finite_numbers(header: bytes) -> InferBody:
    """v2 clients write a missing number as NaN (and may send Infinity), which JSON lacks and
    msgspec refuses: Python's parser reads them, into the same structs."""
    try:
        data = json.loads(header)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, [f"body is not valid JSON: {str(exc)[:120]}"]) from None
    try:
        body: InferBody = msgspec.convert(data, InferBody)
    except msgspec.ValidationError as exc:
        refuse_duplicate_keys(header)
        raise invalid(exc) from None
    return body


def _keys(body: InferBody) -> int:
    """The keys of a decoded body."""
    count = 1 + sum(value is not UNSET for value in (body.id, body.parameters, body.outputs))
    count += len(body.parameters or {})
    for tensor in body.inputs:
        count += 3 + (tensor.parameters is not UNSET) + (tensor.data is not UNSET)
        count += len(tensor.parameters or {})
    for output in body.outputs or ():
        count += 1 + (output.parameters is not UNSET) + len(output.parameters or {})
    return count


_NUMBER_TYPES = frozenset(NUMERIC_DATATYPES)


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
        TensorMetadata(name=f.name, datatype="BYTES" if f.is_bytes else "FP32", shape=[-1])
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
    request: InferBody, card: ModelCard, max_rows: int, data: list[list[Any] | None]
) -> tuple[dict[str, list[Any]], int]:
    """Each feature's values from its tensor, with every problem of names, shapes and types."""
    specs = {f.name: f for f in card.features}
    issues: list[str] = []
    found: dict[str, int] = {}
    inputs = request.inputs
    for i, tensor in enumerate(inputs):
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
        tensor = inputs[i]
        expected = "BYTES" if specs[name].is_bytes else "a numeric datatype (e.g. FP32)"
        if (tensor.datatype == "BYTES") != specs[name].is_bytes or (
            tensor.datatype != "BYTES" and tensor.datatype not in _NUMBER_TYPES
        ):
            issues.append(f"inputs[{i}].datatype: expected {expected}, got {tensor.datatype}")
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            issues.append(f"inputs[{i}].shape: must be [rows] or [rows, 1], got {tensor.shape}")
        size = math.prod(tensor.shape)
        values = data[i]
        if values is None:
            issues.append(f"inputs[{i}].data: missing (and no binary_data_size parameter)")
        elif size != len(values):
            issues.append(
                f"inputs[{i}].data: {len(values)} values, but shape {tensor.shape} needs {size}"
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
    return {name: data[i] or [] for name, i in found.items()}, rows or 0


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
    request.app.state.service.serving()
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


class InferEndpoint:
    """`POST /v2/models/{name}[/versions/{version}]/infer` as a plain ASGI endpoint in the
    app's router, as `/predict` is (see `PredictEndpoint`): one input tensor per feature
    (`BYTES` for categories, numeric for numbers), `[rows]` or `[rows, 1]`; answers the `label`
    and `probabilities` tensors, or `value` for regression."""

    def __init__(self, service: ModelService) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        path = scope["path_params"]
        card = _model(service, path["model_name"], path.get("model_version"))
        check_json_content_type(header(scope, b"content-type"))
        header_length = header(scope, binary.HEADER_LENGTH.encode()) or None
        json_part, blob = binary.split_body(header_length, await read_body(receive))
        parsed = read_request(json_part)
        known = set(output_names(card))
        wanted = {o.name: o for o in parsed.outputs or ()}
        if set(wanted) - known:
            raise ApiError(
                422,
                [
                    f"outputs: unknown output {n[:60]!r} (outputs: {', '.join(sorted(known))})"
                    for n in sorted(set(wanted) - known)
                ],
            )
        data = binary.tensor_values(parsed, blob)
        columns, rows = _columns(parsed, card, service.schemas.max_rows, data)
        model, batcher = service.serving()
        try:
            read = model.read(columns, nan_is_missing=True)
        except InputValidationError as exc:
            raise ApiError(422, [str(issue) for issue in exc.issues[:MAX_LINES]]) from None
        prediction = await batcher.predict(model.feed(read), rows)
        service.metrics.predicted(prediction, read)
        body, blobs = _answer(card, parsed, prediction, rows, wanted)
        if not blobs:
            await send_answer(send, body)
            return
        length = (binary.HEADER_LENGTH.encode(), b"%d" % len(body))
        await send_answer(send, body + b"".join(blobs), b"application/octet-stream", length)


def _answer(
    card: ModelCard,
    parsed: InferBody,
    prediction: Prediction,
    rows: int,
    wanted: dict[str, InferOutput],
) -> tuple[bytes, list[bytes]]:
    """The answer's JSON and, for outputs asked for as binary data, their bytes."""
    tensors: list[tuple[str, str, list[int], Any]] = []
    if prediction.values is not None:
        tensors.append(("value", "FP32", [rows], prediction.values))
    else:
        assert prediction.labels is not None
        assert prediction.probabilities is not None
        tensors.append(("label", "BYTES", [rows], prediction.labels))
        shape = list(prediction.probabilities.shape)
        tensors.append(("probabilities", "FP32", shape, prediction.probabilities))
    every_binary = bool((parsed.parameters or {}).get("binary_data_output"))
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, datatype, shape, array in tensors:
        if wanted and name not in wanted:
            continue
        asked = wanted.get(name)
        binary_out = (asked.parameters or {}).get("binary_data") if asked else None
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary_out if binary_out is not None else every_binary:
            blob = binary.encode(datatype, array)
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = array.tolist() if datatype == "BYTES" else array.ravel()
        outputs.append(output)
    answer = {
        "model_name": card.name,
        "model_version": card.version,
        "id": None if parsed.id is UNSET else parsed.id,
        "outputs": outputs,
    }
    return dumps(answer), blobs


def openapi_path() -> dict[str, Any]:
    """The infer route as the OpenAPI document describes it (its request body is the model's
    own `InferRequest`, from `schemas.infer_request_schema`)."""
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    answer = {"application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}}}
    request = {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}}
    return {
        "post": {
            "tags": ["open inference protocol (v2)"],
            "summary": "Infer (v2)",
            "description": InferEndpoint.__doc__.split("\n\n")[0] if InferEndpoint.__doc__ else "",
            "operationId": "infer",
            "parameters": [
                {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {"required": True, "content": request},
            "responses": {
                # With `binary_data_output` (or an output's `binary_data`): the binary extension.
                "200": {"description": "The output tensors", "content": {**answer, **binary}},
                **openapi_errors(400, 404, 413, 415, 422, 500, 503, v2=True),
            },
        }
    }
