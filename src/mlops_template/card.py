"""The model card: what a trained model expects and what it is.

`models/model.json` is written next to `models/model.onnx` by training and read by inference
and serving; it carries the feature schema, so the server never needs `dataset.toml`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from .drift import FeatureProfile
from .errors import ModelIntegrityError, ModelNotFoundError
from .schema import (
    ColumnSpec,
    Frozen,
    LinearModel,
    ModelSpec,
    Task,
    describe_validation_error,
)

__all__ = [
    "CARD_FILE",
    "CARD_VERSION",
    "MODEL_FILE",
    "DatasetInfo",
    "ModelCard",
    "input_names",
    "load_card",
]

MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
CARD_VERSION = 2
_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def input_names(features: Sequence[ColumnSpec]) -> dict[str, str]:
    """The ONNX graph's input name for each feature: the user's name where it is a plain
    identifier, otherwise a safe spelling of it with the feature's position (`temp max` ->
    `temp_max_1`), so that any column name a CSV can hold works end to end."""
    names: dict[str, str] = {}
    for position, spec in enumerate(features):
        name = spec.name
        if not _SAFE.fullmatch(name) or name in names.values():
            slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:48] or "feature"
            name = f"{'f_' if slug[0].isdigit() else ''}{slug}_{position}"
        names[spec.name] = name
    return names


class DatasetInfo(Frozen):
    """Which data the model was trained and evaluated on."""

    name: str
    source_sha256: str
    rows_train: int
    rows_test: int
    group: str | None = Field(
        None,
        description="The column whose values are never in both splits (`split.group`): the "
        "metrics are on values the model did not see in training",
    )


class ModelCard(Frozen):
    """Everything a consumer of the ONNX file needs to know about it."""

    card_version: int = CARD_VERSION
    name: str
    version: str = Field(description="The first 12 hex digits of the ONNX file's sha256")
    task: Task
    estimator: str
    model: ModelSpec = LinearModel()
    target: ColumnSpec
    features: tuple[ColumnSpec, ...]
    inputs: dict[str, str] = Field(
        description="Each feature's input name in the ONNX graph (safe names for any header)"
    )
    classes: tuple[str, ...] | None = None
    example: dict[str, int | float | str | None] = Field(
        default_factory=dict,
        description="A real row of features, for documentation and smoke tests",
    )
    null_values: tuple[str, ...] = Field(("", "NA"), description="Strings meaning missing in a CSV")
    vocabulary: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Each text feature's terms the model knows; a text with none of them is "
        "scored on the other features alone",
    )
    profile: dict[str, FeatureProfile] = Field(
        default_factory=dict,
        description="Each feature's distribution in the training split, which drift is measured "
        "against (texts have none)",
    )
    metrics: dict[str, float]
    dataset: DatasetInfo
    onnx_sha256: str
    onnx_opset: int
    library_versions: dict[str, str]
    created_at: datetime

    @model_validator(mode="after")
    def _check_inputs(self) -> ModelCard:
        if self.card_version != CARD_VERSION:
            raise ValueError(
                f"card version {self.card_version}, but this code reads version {CARD_VERSION}"
            )
        if list(self.inputs) != list(self.feature_names):
            raise ValueError("`inputs` must name every feature, in order")
        return self

    @cached_property
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
