"""`POST /predict`: records keyed by feature name in, labels and probabilities (or values) out."""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
from starlette.types import Receive, Scope, Send

from ...card import ModelCard
from ...errors import ApiError, InputValidationError
from ...inference import Prediction
from ..schemas import PredictSchemas
from ..service import (
    MAX_LINES,
    ModelService,
    check_json_content_type,
    header,
    openapi_errors,
    read_body,
    read_json,
    refuse_duplicate_keys,
    send_answer,
)

__all__ = [
    "PATH",
    "PredictEndpoint",
    "RecordsCodec",
    "openapi_path",
    "predict_json",
]

PATH = "/predict"


class RecordsCodec:
    """`/predict` bodies in and answers out, for one model card, at the cost of the floor.

    At batch 1024 a generic parser's dict per record, and a dict per answered record, cost
    more than the model; so each side is compiled once for the card.

    `read` decodes the body straight into one struct per record (msgspec, in C), which also
    decides that the envelope is right: an object with only `records`, a list of 1 to
    `max_rows` records, each with exactly the card's features; msgspec names the first place
    where it is not. Values are the data contract's to check, a whole column at a time.

    `write` assembles the answer: orjson writes each output column in C (float32 at its
    shortest exact form), and the records are its values interleaved with the fixed text
    around them (the label, the class names), joined once. The bytes are exactly what
    `orjson.dumps` gives for the same records (a test holds the two together).
    """

    def __init__(self, card: ModelCard, max_rows: int) -> None:
        self._card = card
        self._max_rows = max_rows
        names = card.feature_names
        # Struct fields need identifiers; each is renamed to its feature's name in JSON.
        fields = [(f"f{i}", Any) for i in range(len(names))]
        record = msgspec.defstruct(
            "Record",
            fields,
            rename={f"f{i}": name for i, name in enumerate(names)},
            forbid_unknown_fields=True,
            gc=False,  # decoded JSON holds no reference cycles: spare the collector 1024 objects
        )
        records = Annotated[list[record], msgspec.Meta(min_length=1, max_length=max_rows)]  # type: ignore[valid-type]
        body = msgspec.defstruct("Body", [("records", records)], forbid_unknown_fields=True)
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(body)
        self._getters = [(name, attrgetter(f"f{i}")) for i, name in enumerate(names)]
        self._init_writer(card)

    def read(self, body: bytes) -> dict[str, list[Any]]:
        """The body as one list of values per feature; 400 or 422 for a bad envelope."""
        records = read_json(self._decoder, body).records
        # As many colons as keys: no key given twice (the decoder keeps the last); colons in
        # strings only add to the count, and send the body to the full check.
        if body.count(b":") != 1 + len(self._getters) * len(records):
            refuse_duplicate_keys(body)
        return {name: list(map(get, records)) for name, get in self._getters}

    def _init_writer(self, card: ModelCard) -> None:
        head = orjson.dumps({"model_name": card.name, "model_version": card.version})
        self._head = head[:-1] + b',"predictions":['
        classes = tuple(card.classes or ())
        self._starts: dict[Any, bytes] = {}
        self._between: list[bytes] = []
        if card.task == "regression":
            return
        keys = [orjson.dumps(c) + b":" for c in classes]
        # Each record starts with its label and the first class name; then each further
        # probability is preceded by its class name.
        self._starts = {
            c: b'{"label":' + orjson.dumps(c) + b',"probabilities":{' + keys[0] for c in classes
        }
        self._between = [b"," + key for key in keys[1:]]

    def write(self, prediction: Prediction, unknown: dict[str, list[int]] | None = None) -> bytes:
        """The JSON answer for a prediction, with `no_known_terms` for a model of text: the
        records whose text, feature by feature, holds no term the model knows."""
        if prediction.values is not None:
            columns = prediction.values.reshape(1, -1)
            starts = [b'{"value":'] * len(columns[0])
            end = b"}"
        else:
            assert prediction.labels is not None
            assert prediction.probabilities is not None
            columns = np.ascontiguousarray(prediction.probabilities.T)
            starts = list(map(self._starts.__getitem__, prediction.labels.tolist()))
            end = b"}}"
        rows = len(starts)
        width = 2 * len(columns) + 1  # start, value, (separator, value)..., end
        parts: list[bytes] = [b""] * (rows * width)
        parts[0::width] = starts
        for j, column in enumerate(columns):
            # A flat float32 array as `[v0,v1,...]`: no value holds a comma or a bracket.
            values = orjson.dumps(column, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
            parts[2 * j + 1 :: width] = values
            if j:
                parts[2 * j :: width] = [self._between[j - 1]] * rows
        parts[width - 1 :: width] = [end + b","] * rows
        parts[-1] = end
        tail = b"]}" if unknown is None else b'],"no_known_terms":' + orjson.dumps(unknown) + b"}"
        return self._head + b"".join(parts) + tail


async def predict_json(
    service: ModelService, codec: RecordsCodec, content_type: str, body: bytes
) -> bytes:
    """The whole of `/predict`, from the raw body to the JSON answer; raises `ApiError`."""
    model, batcher = service.serving()
    check_json_content_type(content_type)
    columns = codec.read(body)
    try:
        read = model.read(columns, row_label="record")
    except InputValidationError as exc:
        raise ApiError(422, [str(issue) for issue in exc.issues[:MAX_LINES]]) from None
    rows = len(columns[service.feature_names[0]])
    prediction = await batcher.predict(model.feed(read), rows)
    unknown = model.unknown_texts(read) if service.card.vocabulary else None
    service.metrics.predicted(prediction, read, unknown)
    return codec.write(prediction, unknown)


class PredictEndpoint:
    """`POST /predict` as a plain ASGI endpoint in the app's router.

    FastAPI's request parsing and dependency solving cost more than checking a one-record
    request, so this route reads and answers the raw ASGI messages itself. It stays in the
    app's router: middleware, exception handlers (an `ApiError` raised here becomes the usual
    error body), metrics and tracing apply to it as to every route. FastAPI dependencies do not:
    add authentication as ASGI middleware (see the README).
    """

    def __init__(self, service: ModelService, codec: RecordsCodec) -> None:
        self.service = service
        self.codec = codec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = header(scope, b"content-type")
        body = await read_body(receive)
        await send_answer(send, await predict_json(self.service, self.codec, content_type, body))


def openapi_path(schemas: PredictSchemas) -> dict[str, Any]:
    """`/predict` as the OpenAPI document describes it, its bodies from the model card."""
    body = {"$ref": f"#/components/schemas/{schemas.request.__name__}"}
    answer = {"$ref": f"#/components/schemas/{schemas.response.__name__}"}
    return {
        "post": {
            "tags": ["predict"],
            "summary": "Predict a batch of records",
            "description": (
                "Predict each record's label and class probabilities (or value, for "
                "regression).\n\nEvery feature is required (null where the card allows a "
                "missing value), categories and numeric ranges are enforced, and NaN or "
                "infinity is refused: the data contract checks each column of the batch at "
                "once, with the same rules and messages as `prepare`."
            ),
            "operationId": "predict",
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {
                    "description": "One prediction per record, in order",
                    "content": {"application/json": {"schema": answer}},
                },
                **openapi_errors(400, 413, 415, 422, 500, 503),
            },
        }
    }
