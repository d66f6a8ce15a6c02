"""Request and response models, built from the model card so the API always matches the model.

`/docs` shows each real feature with its type, range or categories, and an example row taken
from the test split. The `/predict` models document the API; the values themselves are checked
by the data contract (`contract.py`), a whole column at a time, as in `prepare`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, with_config
from typing_extensions import TypedDict

from .. import contract
from ..card import ModelCard
from ..schema import ColumnSpec

__all__ = [
    "NUMERIC_DATATYPES",
    "ErrorResponse",
    "InferBody",
    "InferErrorResponse",
    "InferOutput",
    "InferResponse",
    "InferTensor",
    "ModelMetadata",
    "PredictSchemas",
    "ServerMetadata",
    "TensorMetadata",
    "fault_example",
    "infer_request_schema",
    "output_names",
]

_STRICT = ConfigDict(extra="forbid")


def _one_of(values: tuple[str, ...]) -> Any:
    """`Literal[values]`, built at run time from the model card."""
    return Literal.__getitem__(values)


def _feature_type(spec: ColumnSpec) -> Any:
    base: Any
    description = spec.description or spec.name
    if spec.type == "category":
        base = _one_of(tuple(spec.categories or ()))
    elif spec.type == "text":
        base = str
    elif spec.is_date:
        base = date if spec.type == "date" else datetime
        # In words: JSON Schema's `minimum` and `maximum` compare numbers, not dates.
        for word, bound in (("from", spec.min), ("to", spec.max)):
            description += f" {word} {bound}" if bound is not None else ""
    elif spec.type == "integer":
        base = Annotated[int, Field(ge=spec.min, le=spec.max)]
    else:
        base = Annotated[float, Field(allow_inf_nan=False, ge=spec.min, le=spec.max)]
    if spec.nullable:
        base = base | None
        description += " (null when unknown)"
    return Annotated[base, Field(description=description)]


def _prediction_item(card: ModelCard) -> Any:
    """One record's prediction: label and probabilities, or value."""
    if card.task == "classification":
        classes: Any = _one_of(tuple(card.classes or ()))
        return create_model(
            "ClassPrediction",
            __config__=_STRICT,
            label=(classes, Field(description="The most likely class")),
            probabilities=(dict[classes, float], Field(description="Each class's probability")),
        )
    return create_model(
        "ValuePrediction",
        __config__=_STRICT,
        value=(float, Field(description=f"Predicted {card.target.name}")),
    )


NUMERIC_DATATYPES: tuple[str, ...] = ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32")
NUMERIC_DATATYPES += ("INT64", "UINT8", "UINT16", "UINT32", "UINT64")
_SCALAR = {"type": ["boolean", "integer", "number", "string", "null"]}
# In a JSON body no tensor may say its values follow as binary data (that is the binary
# tensor extension's own framing, documented apart).
_JSON_TENSOR_PARAMETERS = {
    "type": "object",
    "additionalProperties": _SCALAR,
    "properties": {"binary_data_size": {"not": {}}},
}


def output_names(card: ModelCard) -> tuple[str, ...]:
    """The model's output tensors under the Open Inference Protocol."""
    return ("value",) if card.task == "regression" else ("label", "probabilities")


def infer_request_schema(card: ModelCard, max_rows: int) -> dict[str, Any]:
    """The v2 infer request for this model as JSON Schema: one tensor per feature, in the card's
    order, each with its datatype and values of its type, categories and range.

    Two rules of the protocol JSON Schema cannot state are the server's to check: a tensor's
    shape gives how many values it holds, and every tensor has the same number of rows.
    """

    def tensor(spec: ColumnSpec) -> dict[str, Any]:
        values = TypeAdapter(_feature_type(spec)).json_schema()
        if spec.type == "category" and spec.nullable:  # the protocol's missing label
            values = {"anyOf": [values, {"const": ""}]}
        rows = {"type": "integer", "minimum": 1, "maximum": max_rows}
        datatypes = ["BYTES"] if spec.is_bytes else list(NUMERIC_DATATYPES)
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"const": spec.name},
                "shape": {
                    "type": "array",
                    "prefixItems": [rows, {"const": 1}],
                    "items": False,
                    "minItems": 1,
                    "maxItems": 2,
                },
                "datatype": {"enum": datatypes},
                "data": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": values},
                "parameters": _JSON_TENSOR_PARAMETERS,
            },
        }

    return {
        "title": "InferRequest",
        "description": infer_request_schema.__doc__.split("\n\n")[0]
        if infer_request_schema.__doc__
        else "",
        "type": "object",
        "additionalProperties": False,
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "additionalProperties": _SCALAR},
            "inputs": {
                "type": "array",
                "prefixItems": [tensor(spec) for spec in card.features],
                "items": False,
                "minItems": len(card.features),
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"enum": list(output_names(card))},
                        "parameters": {"type": "object", "additionalProperties": _SCALAR},
                    },
                },
            },
        },
    }


class PredictSchemas:
    """The `/predict` request and response models for one model card."""

    def __init__(self, card: ModelCard, *, max_rows: int) -> None:
        self.card = card
        self.max_rows = max_rows
        fields = {spec.name: _feature_type(spec) for spec in card.features}
        # Strict: "47.5" is not a number and true is not 1, however lenient JSON parsers may be.
        strict = ConfigDict(extra="forbid", strict=True)
        record: Any = with_config(strict)(TypedDict("Record", fields))  # type: ignore[operator]
        examples: Any = [{"records": [card.example]}] if card.example else []
        self.request = create_model(
            "PredictRequest",
            __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": examples}),
            records=(
                list[record],
                Field(
                    min_length=1,
                    max_length=max_rows,
                    description="Rows to predict, keyed by feature",
                ),
            ),
        )
        items: Any = list[_prediction_item(card)]  # type: ignore[misc]
        texts: dict[str, Any] = {}
        if card.vocabulary:  # a model of text says which texts it knew no term of
            unknown = Field(
                description="For each text feature, the records (0-based) whose text holds no "
                "term the model knows: their answer rests on the other features alone"
            )
            features: Any = _one_of(tuple(card.vocabulary))
            texts["no_known_terms"] = (dict[features, list[int]], unknown)
        self.response = create_model(
            "PredictResponse",
            __config__=_STRICT,
            model_name=(str, ...),
            model_version=(str, Field(description="The first 12 hex digits of the ONNX sha256")),
            predictions=(items, Field(description="One per record, in order")),
            **texts,
        )


def fault_example(card: ModelCard, row_label: str) -> str:
    """The message the contract gives for `true` sent as the model's first feature: an example,
    in the server's own words and the user's own column name, for `/docs`."""
    spec = card.features[0]
    faults = contract.check([contract.read_values(spec, [True])])
    (issue,) = contract.issues(faults, lambda column, rows: "True", row_label=row_label)
    return str(issue)


class ErrorResponse(BaseModel):
    """Every error: one line per problem, naming the row and field, and the request id."""

    model_config = _STRICT
    detail: list[str]
    request_id: str | None = None


class InferErrorResponse(BaseModel):
    """An Open Inference Protocol error: one message, as its clients expect."""

    model_config = _STRICT
    error: str


Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
Scalar = bool | int | float | str | None


# The v2 infer request's envelope, which msgspec reads straight into these structs. Each
# tensor's values are left to the data contract, which checks a whole column at once and names
# the feature and row of any value that is wrong. An optional field may be left out, never null.
_Shape = Annotated[
    list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(min_length=1, max_length=2)
]
_Parameters = dict[str, Scalar] | msgspec.UnsetType


class InferTensor(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str
    shape: _Shape
    datatype: Datatype
    parameters: _Parameters = msgspec.UNSET
    data: list[Any] | msgspec.UnsetType = msgspec.UNSET  # absent when sent as binary data


class InferOutput(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    parameters: _Parameters = msgspec.UNSET


class InferBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str | msgspec.UnsetType = msgspec.UNSET
    parameters: _Parameters = msgspec.UNSET
    inputs: Annotated[list[InferTensor], msgspec.Meta(min_length=1)]
    outputs: list[InferOutput] | msgspec.UnsetType = msgspec.UNSET


class ResponseOutput(BaseModel):
    model_config = _STRICT
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Scalar] | None = None
    data: list[float | str]


class InferResponse(BaseModel):
    model_config = _STRICT
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Scalar] | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    model_config = _STRICT
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: dict[str, Scalar] | None = None


class ModelMetadata(BaseModel):
    """`GET /v2/models/{name}`."""

    model_config = _STRICT
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    model_config = _STRICT
    name: str
    version: str
    extensions: list[str]
