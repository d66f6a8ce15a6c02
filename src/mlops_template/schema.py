"""The dataset schema: the one place that says what the data is.

It is read from `dataset.toml` at the project's root. Everything downstream derives from it:
preparation checks every row against it, training builds the model's inputs from it, the model
card carries it, and the server builds its request schema from the card.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from .errors import ConfigError
from .settings import ENV_PREFIX

__all__ = [
    "TERM_PATTERN",
    "ColumnSpec",
    "DatasetSchema",
    "Frozen",
    "ModelSpec",
    "SplitSpec",
    "canonical_number",
    "day_number",
    "describe_validation_error",
    "load_schema",
    "parse_schema",
    "show_bound",
    "toml_key",
    "toml_string",
]

ColumnType = Literal["float", "integer", "category", "text", "date", "datetime"]
Task = Literal["classification", "regression"]
DEFAULT_MAX_TERMS = 20_000
# A text's terms, lower-cased: runs of two or more letters, digits or underscores, in any
# script (scikit-learn's tokens; the exported graph's tokenizer is given the same characters).
TERM_PATTERN = r"\w\w+"
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


def canonical_number(value: float) -> str:
    """The one spelling of a number used as a category: `1`, `1.0` and `"1"` all give `"1"`."""
    number = float(value)
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_number(value: date) -> float:
    """A date or a time as the model takes it: days since 1970-01-01 (a time's fraction of a
    day included). A time without a zone is read as UTC."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH).total_seconds() / 86_400


def show_bound(value: float | date) -> str:
    """A bound as messages show it: `2024-05-31`, `80`, `0.5`."""
    return value.isoformat() if isinstance(value, date) else f"{value:g}"


def _canonical_categories(value: Any) -> Any:
    """Numbers in a `categories` list become their canonical strings (`[1, 2]` -> `["1", "2"]`)."""
    if not isinstance(value, list | tuple):
        return value
    out = []
    for item in value:
        if isinstance(item, bool):
            raise ValueError("categories are labels or numbers, not true/false")
        if isinstance(item, int | float):
            if not math.isfinite(item):
                raise ValueError("a numeric category must be a finite number")
            out.append(canonical_number(item))
        else:
            out.append(item)
    return out


class Frozen(BaseModel):
    """A record read from a file the user or training wrote: unknown keys are errors, and it
    never changes once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class ColumnSpec(Frozen):
    """One column: its type, whether it may be missing, and its allowed values."""

    name: Name
    type: ColumnType
    nullable: bool = False
    categories: Annotated[tuple[Name, ...] | None, BeforeValidator(_canonical_categories)] = None
    # Numbers for numeric columns; TOML dates (unquoted) for date and datetime columns.
    min: float | date | datetime | None = None
    max: float | date | datetime | None = None
    max_terms: int | None = Field(None, ge=1, le=1_000_000)
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
        if self.type == "text" and (self.min is not None or self.max is not None):
            raise ValueError("`min`/`max` apply to numeric columns, not text")
        if self.max_terms is not None and self.type != "text":
            raise ValueError(f"`max_terms` applies to text columns, not {self.type}")
        for key, bound in (("min", self.min), ("max", self.max)):
            if bound is not None and isinstance(bound, date) != self.is_date:
                wanted = "a date (e.g. 2024-05-31)" if self.is_date else "a number"
                raise ValueError(f"`{key}` of a {self.type} column must be {wanted}")
        low, high = self.bounds
        if low > high:
            raise ValueError(f"`min` ({self.min}) is greater than `max` ({self.max})")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        """`min` and `max` as the numbers the checker compares (days for dates), unbounded as
        infinities."""

        def number(bound: float | date | None, default: float) -> float:
            if bound is None:
                return default
            return day_number(bound) if isinstance(bound, date) else bound

        return number(self.min, -math.inf), number(self.max, math.inf)

    @property
    def is_numeric(self) -> bool:
        """Whether values are numbers (float or integer)."""
        return self.type in ("float", "integer")

    @property
    def is_date(self) -> bool:
        """Whether values are dates or times: ISO 8601 strings, taken by the model as days."""
        return self.type in ("date", "datetime")

    @property
    def is_bytes(self) -> bool:
        """Whether values travel as strings (the Open Inference Protocol's BYTES tensors):
        labels, texts, and dates in ISO 8601."""
        return self.is_string or self.is_date

    @property
    def is_string(self) -> bool:
        """Whether values are strings (a category label or a text): the model takes strings."""
        return self.type in ("category", "text")

    @property
    def terms(self) -> int:
        """A text column's vocabulary size: its `max_terms`, or the most frequent 20,000."""
        return self.max_terms or DEFAULT_MAX_TERMS

    @cached_property
    def number_like(self) -> bool:
        """Whether every category is a number, so that `1`, `1.0` and `"1"` all name category 1."""
        try:
            return bool(self.categories) and all(
                canonical_number(float(c)) == c for c in self.categories or ()
            )
        except ValueError:
            return False


class SplitSpec(Frozen):
    """How rows are split into training and held-out test sets."""

    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = Field(default=42, ge=0)
    # Rows that share this column's value go to the same split, so the test metrics are on
    # values the model never saw (a question asked again, a customer's other orders).
    group: Name | None = None


ClassWeight = Literal["balanced"] | None


class LinearModel(Frozen):
    """Logistic regression (classification) or ridge regression, on scaled inputs."""

    type: Literal["linear"] = "linear"
    C: float = Field(1.0, gt=0, description="Inverse regularisation strength (classification)")
    alpha: float = Field(1.0, ge=0, description="Regularisation strength (regression)")
    class_weight: ClassWeight = None


class RandomForestModel(Frozen):
    """A random forest of decision trees."""

    type: Literal["random_forest"]
    n_estimators: int = Field(200, ge=1, le=2000)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    class_weight: ClassWeight = None


class GradientBoostingModel(Frozen):
    """Gradient-boosted decision trees (scikit-learn's `GradientBoosting*`)."""

    type: Literal["gradient_boosting"]
    n_estimators: int = Field(100, ge=1, le=5000)
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_depth: int | None = Field(3, ge=1)
    max_leaf_nodes: int | None = Field(None, ge=2)


_MODEL_TYPES = ("linear", "random_forest", "gradient_boosting")
ModelSpec = Annotated[
    LinearModel | RandomForestModel | GradientBoostingModel, Field(discriminator="type")
]


class DatasetSchema(Frozen):
    """A tabular dataset: where it is, its target, its features and what to ignore."""

    name: Name
    source: Path
    target: ColumnSpec
    features: tuple[ColumnSpec, ...] = Field(min_length=1)
    ignore: tuple[Name, ...] = ()
    null_values: tuple[str, ...] = ("", "NA")
    split: SplitSpec = SplitSpec()
    model: ModelSpec = LinearModel()
    _file: Path = PrivateAttr(default=Path("dataset.toml"))

    @property
    def file(self) -> Path:
        """The schema file it was read from, as messages name it."""
        return self._file

    @property
    def data_hint(self) -> str:
        """What to do about rows that break this schema."""
        return f"fix the rows named above, or the schema in {self.file} if the data is right"

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
        if self.target.type in ("text", "date", "datetime"):
            raise ValueError(
                f"the target cannot be {self.target.type}: a category target makes a "
                "classifier, a number a regressor"
            )
        text = [f.name for f in self.features if f.type == "text"]
        if text and self.model.type != "linear":
            raise ValueError(
                f'text features ({", ".join(text)}) need model.type = "linear" (TF-IDF '
                f"terms are many and sparse; {self.model.type} is not offered for them)"
            )
        group = self.split.group
        if group is not None and group not in (*self.feature_names, *self.ignore):
            raise ValueError(f"split.group {group!r} must name a feature or an ignored column")
        if getattr(self.model, "class_weight", None) is not None and self.task != "classification":
            raise ValueError("model.class_weight applies to classification, not regression")
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


def describe_validation_error(
    error: ValidationError, rename: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None
) -> list[str]:
    """One `field: message (got value)` line per pydantic error, never a raw dump.

    Locations read like code (`features.magnesium.type`); `rename` may rewrite a location first
    (e.g. a list index into the name the user wrote). An error of the whole object has no
    location. A value is echoed only when it is short and harmless: never a non-finite number,
    a container, or more than 40 characters.
    """
    lines = []
    for item in error.errors(include_url=False, include_context=False):
        loc = rename(tuple(item["loc"])) if rename else tuple(item["loc"])
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        message = str(item["msg"]).removeprefix("Value error, ")
        echo = _echo(item.get("input"), item["type"])
        lines.append(f"{where}: {message}{echo}" if where else f"{message}{echo}")
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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: dataset schema not found",
            hint=f"create dataset.toml (see the README) or point {ENV_PREFIX}SCHEMA_PATH at it",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file: {exc}") from None
    return parse_schema(text, path)


def parse_schema(text: str, path: Path) -> DatasetSchema:
    """A dataset schema from the text of a file at `path` (which messages name, and which
    relative paths in it are relative to)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not a readable TOML file: {exc}") from None
    data: dict[str, Any] = dict(raw)
    features = data.get("features")
    names: list[str] = []
    if isinstance(features, dict):
        names = list(features)
        data["features"] = [
            {"name": name, **spec} if isinstance(spec, dict) else spec
            for name, spec in features.items()
        ]

    def rename(loc: tuple[Any, ...]) -> tuple[Any, ...]:
        # `features[4].type` names the table the user wrote: `features.magnesium.type`.
        if (
            len(loc) >= 2
            and loc[0] == "features"
            and isinstance(loc[1], int)
            and loc[1] < len(names)
        ):
            return ("features", toml_key(names[loc[1]]), *loc[2:])
        if len(loc) >= 2 and loc[0] == "model" and loc[1] in _MODEL_TYPES:
            return ("model", *loc[2:])  # the union's tag is not a key the user wrote
        return loc

    try:
        schema = DatasetSchema.model_validate(data)
    except ValidationError as exc:
        lines = "\n  - ".join(describe_validation_error(exc, rename))
        raise ConfigError(f"{path}: invalid dataset schema\n  - {lines}") from None
    if not schema.source.is_absolute():
        schema = schema.model_copy(update={"source": path.parent / schema.source})
    schema._file = path
    return schema


def toml_key(name: str) -> str:
    """A key as TOML would need it written: bare when it can be, quoted otherwise."""
    if name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        return name
    return toml_string(name)


def toml_string(value: object) -> str:
    """`value` as a TOML basic string: JSON's escapes are TOML's."""
    return json.dumps(str(value), ensure_ascii=False)
