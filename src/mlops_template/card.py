"""The model card: what a trained model expects and what it is.

`models/model.json` is written next to `models/model.onnx` by training and read by inference
and serving; it carries the feature schema, so the server never needs `dataset.toml`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ModelIntegrityError, ModelNotFoundError
from .schema import ColumnSpec, Task, describe_validation_error

__all__ = ["CARD_FILE", "MISSING_CATEGORY", "MODEL_FILE", "DatasetInfo", "ModelCard", "load_card"]

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
# How the ONNX graph's inputs encode a missing value: NaN for numbers (the graph imputes it),
# the empty string for categories (its own one-hot level).
MISSING_CATEGORY = ""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class DatasetInfo(_Frozen):
    """Which data the model was trained and evaluated on."""

    name: str
    source_sha256: str
    rows_train: int
    rows_test: int


class ModelCard(_Frozen):
    """Everything a consumer of the ONNX file needs to know about it."""

    card_version: int = 1
    name: str
    version: str = Field(description="The first 12 hex digits of the ONNX file's sha256")
    task: Task
    estimator: str
    target: ColumnSpec
    features: tuple[ColumnSpec, ...]
    classes: tuple[str, ...] | None = None
    example: dict[str, float | str | None] = Field(
        default_factory=dict,
        description="A real row of features, for documentation and smoke tests",
    )
    null_values: tuple[str, ...] = Field(("", "NA"), description="Strings meaning missing in a CSV")
    metrics: dict[str, float]
    dataset: DatasetInfo
    onnx_sha256: str
    onnx_opset: int
    library_versions: dict[str, str]
    created_at: datetime

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's inputs, in order."""
        return tuple(f.name for f in self.features)


def load_card(path: Path) -> ModelCard:
    """Read and validate a model card."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelNotFoundError(f"{path}: model card not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{path}: cannot read the model card: {exc}") from None
    try:
        return ModelCard.model_validate_json(text)
    except ValidationError as exc:
        lines = "\n  - ".join(describe_validation_error(exc))
        raise ModelIntegrityError(f"{path}: not a valid model card\n  - {lines}") from None
