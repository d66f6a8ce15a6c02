"""The dataset schema: the one place that says what the data is.

It is read from `dataset.toml` at the project's root. Everything downstream derives from it:
preparation checks every row against it, training builds the model's inputs from it, the model
card carries it, and the server builds its request schema from the card.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .settings import ENV_PREFIX

__all__ = ["ColumnSpec", "DatasetSchema", "SplitSpec", "describe_validation_error", "load_schema"]

ColumnType = Literal["float", "integer", "category"]
Task = Literal["classification", "regression"]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Frozen):
    """One column: its type, whether it may be missing, and its allowed values."""

    name: Name
    type: ColumnType
    nullable: bool = False
    categories: tuple[Name, ...] | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check_domain(self) -> Self:
        if self.type == "category":
            if not self.categories:
                raise ValueError("a category column needs a non-empty `categories` list")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("`categories` has duplicates")
            if self.min is not None or self.max is not None:
                raise ValueError("`min`/`max` apply to numeric columns, not categories")
        elif self.categories is not None:
            raise ValueError(f"`categories` applies to category columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is greater than `max` ({self.max})")
        return self

    @property
    def is_numeric(self) -> bool:
        """Whether values are numbers (float or integer)."""
        return self.type != "category"


class SplitSpec(_Frozen):
    """How rows are split into training and held-out test sets."""

    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = Field(default=42, ge=0)


class DatasetSchema(_Frozen):
    """A tabular dataset: where it is, its target, its features and what to ignore."""

    name: Name
    source: Path
    target: ColumnSpec
    features: tuple[ColumnSpec, ...] = Field(min_length=1)
    ignore: tuple[Name, ...] = ()
    null_values: tuple[str, ...] = ("", "NA")
    split: SplitSpec = SplitSpec()

    @model_validator(mode="after")
    def _check_names(self) -> Self:
        names = [self.target.name, *(f.name for f in self.features), *self.ignore]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"columns named more than once (target, features, ignore): {duplicates}"
            )
        if self.target.nullable:
            raise ValueError("the target cannot be nullable: rows without a target are dropped")
        return self

    @property
    def task(self) -> Task:
        """Classification for a category target, regression for a numeric one."""
        return "classification" if self.target.type == "category" else "regression"

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the data file must have, target first."""
        return (self.target.name, *(f.name for f in self.features), *self.ignore)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's inputs, in order."""
        return tuple(f.name for f in self.features)


def describe_validation_error(error: ValidationError) -> list[str]:
    """One `field: message (got value)` line per pydantic error, never a raw dump.

    Locations read like code (`records[3].bill_length_mm`). A value is echoed only when it is
    short and harmless: never a non-finite number, a container, or more than 40 characters.
    """
    lines = []
    for item in error.errors(include_url=False, include_context=False):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        where = where.lstrip(".") or "(body)"
        lines.append(f"{where}: {item['msg']}{_echo(item.get('input'), item['type'])}")
    return lines


def _echo(value: object, kind: str) -> str:
    if kind in {"missing", "json_invalid"} or isinstance(value, dict | list | tuple):
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = repr(value)
    return f" (got {text})" if len(text) <= 40 else ""


def load_schema(path: Path) -> DatasetSchema:
    """Read and validate a dataset schema file; relative paths in it are relative to the file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: dataset schema not found",
            hint=f"create dataset.toml (see the README) or point {ENV_PREFIX}SCHEMA_PATH at it",
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file: {exc}") from None
    data: dict[str, Any] = dict(raw)
    features = data.get("features")
    if isinstance(features, dict):
        data["features"] = [
            {"name": name, **spec} if isinstance(spec, dict) else spec
            for name, spec in features.items()
        ]
    try:
        schema = DatasetSchema.model_validate(data)
    except ValidationError as exc:
        lines = "\n  - ".join(describe_validation_error(exc))
        raise ConfigError(f"{path}: invalid dataset schema\n  - {lines}") from None
    if not schema.source.is_absolute():
        schema = schema.model_copy(update={"source": path.parent / schema.source})
    return schema
