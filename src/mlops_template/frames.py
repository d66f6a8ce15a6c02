"""The data contract's reader for files: a column's arrays (`contract.Column`) as Polars
expressions over the raw column, run lazily over a whole file or on one chunk, and the typed
column a checked file is written with. `contract.check` applies the rules to what they read,
as it does for JSON records and tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import polars as pl

from .contract import MISSING_TEXT, NULL, UNKNOWN, Column, read_dates
from .schema import ColumnSpec

__all__ = [
    "castable",
    "polars_exprs",
    "read_polars",
    "typed_dtype",
    "typed_expr",
    "with_typed_dates",
]


def castable(dtype: pl.DataType, spec: ColumnSpec) -> bool:
    """Whether a column of `dtype` can hold `spec`'s values at all (a file's typed column)."""
    if dtype == pl.String or dtype == pl.Null:
        return True
    if spec.type == "text":  # a code or a number written as text reads as its text
        return isinstance(dtype, pl.Categorical | pl.Enum) or dtype.is_numeric()
    if spec.type == "category":
        numeric_ok = spec.number_like and dtype.is_numeric()
        return isinstance(dtype, pl.Categorical | pl.Enum) or numeric_ok
    if spec.type == "date":
        return dtype == pl.Date
    if spec.type == "datetime":
        return dtype == pl.Date or isinstance(dtype, pl.Datetime)
    return dtype.is_numeric()


def _category(spec: ColumnSpec) -> pl.Expr:
    """A category column as an Enum of its categories, null where missing or unknown.

    Through an Enum (it streams, unlike a lookup table); for number-like categories any
    spelling of a number (`1`, `1.0`) names its canonical category (`"1"`).
    """
    raw = pl.col(spec.name)
    levels = pl.Enum(list(spec.categories or ()))
    value = _labelled(raw.cast(pl.String), levels)
    if spec.number_like:
        number = raw.cast(pl.String).cast(pl.Float64, strict=False)
        whole = number.is_finite() & (number == number.floor()) & (number.abs() < 2**53)
        spelled = (
            pl.when(whole)
            .then(number.cast(pl.Int64).cast(pl.String))
            .otherwise(number.cast(pl.String))
        )
        value = value.fill_null(_labelled(spelled, levels))
    return value


_COMPARED = 4  # categories up to which comparing beats Polars' lookup (a hash per row)


def _labelled(text: pl.Expr, levels: pl.Enum) -> pl.Expr:
    """`text` as an Enum of `levels`, null where it is none of them.

    A few labels are compared in turn: a comparison with a short label costs a fraction of
    a hash and a probe (3 labels: 27 ms per million rows instead of 42, 2: 20 instead of 40).
    """
    labels = list(levels.categories)
    if not labels or len(labels) > _COMPARED:
        return text.cast(levels, strict=False)
    found: Any = pl  # pl.when(...), then .when(...) on what it gives
    for label in labels:
        found = found.when(text == label).then(pl.lit(label, dtype=levels))
    return cast(pl.Expr, found.otherwise(pl.lit(None, dtype=levels)))


def polars_exprs(spec: ColumnSpec, prefix: str) -> list[pl.Expr]:
    """The arrays of a `Column` for `spec`, as expressions over its raw column.

    Names: `{prefix}v` (numbers, Float64), `{prefix}c` (codes, Int32) or `{prefix}t` (texts,
    and dates as their text: String), `{prefix}n` (null) and, for numbers, `{prefix}u`
    (unreadable; any value in a file reads as a text or a label, so theirs would be all
    false). Run them lazily over a whole file, or on one chunk.
    """
    raw = pl.col(spec.name)
    null = raw.is_null().alias(f"{prefix}n")
    if spec.type == "text":
        return [raw.cast(pl.String).fill_null(MISSING_TEXT).alias(f"{prefix}t"), null]
    if spec.is_date:  # as ISO text (a typed column too), which `contract.read_dates` reads
        return [raw.cast(pl.String).alias(f"{prefix}t"), null]
    if spec.type == "category":
        codes = _category(spec).to_physical().cast(pl.Int32)
        codes = (
            pl.when(raw.is_null())
            .then(pl.lit(NULL, dtype=pl.Int32))
            .otherwise(codes.fill_null(UNKNOWN))
            .alias(f"{prefix}c")
        )
        return [codes, null]
    number = raw.cast(pl.Float64, strict=False)
    unreadable = (raw.is_not_null() & number.is_null()).alias(f"{prefix}u")
    return [number.fill_null(math.nan).alias(f"{prefix}v"), null, unreadable]


def typed_dtype(spec: ColumnSpec, *, enum: bool = False) -> pl.DataType:
    """The Polars type of `typed_expr(spec, enum=enum)`."""
    if spec.type == "category" and enum:
        return pl.Enum(spec.categories or ())
    kinds = {"float": pl.Float64(), "integer": pl.Int64(), "date": pl.Date()}
    kinds["datetime"] = pl.Datetime("us", "UTC")
    return kinds.get(spec.type, pl.String())


def typed_expr(spec: ColumnSpec, *, enum: bool = False) -> pl.Expr:
    """`spec`'s column as it is written out once checked: Float64, Int64, or the canonical
    category (an Enum of the spec's categories with `enum`, else String); null where missing.
    Valid only for rows that passed `check`. A date stays its text here: `with_typed_dates`
    types it from the checked `Column`, which read it."""
    raw = pl.col(spec.name)
    if spec.is_date:
        return raw.cast(pl.String).alias(spec.name)
    if spec.type == "category" and enum:
        return _category(spec).alias(spec.name)  # the contract's codes share it (lazy CSE)
    if spec.type == "text" or (spec.type == "category" and not spec.number_like):
        # A checked label is spelled exactly as one of the categories already: no lookup.
        return raw.cast(pl.String).alias(spec.name)
    if spec.type == "category":
        return _category(spec).cast(pl.String).alias(spec.name)
    number = raw.cast(pl.Float64, strict=False)  # the contract's own (lazy CSE shares it)
    if spec.type == "float":  # a checked number is finite already: nothing to mask
        return number.alias(spec.name)
    # The check runs after this: a NaN or an infinity must not fail the cast before the check
    # can name it, and a whole number past Int64 must fail it rather than turn to null.
    return pl.when(number.is_finite()).then(number).cast(pl.Int64).alias(spec.name)


def with_typed_dates(frame: pl.DataFrame, columns: Sequence[Column]) -> pl.DataFrame:
    """`frame` with the date and datetime columns among the checked `columns` typed, as they are
    written out: Date, or Datetime in UTC (`typed_expr` left them as their text)."""
    typed = []
    for column in columns:
        if not column.spec.is_date:
            continue
        days = pl.Series(column.spec.name, column.numbers).fill_nan(None)
        if column.spec.type == "date":
            typed.append(days.cast(pl.Int32).cast(pl.Date))
        else:
            micros = (days * 86_400_000_000).round(0).cast(pl.Int64)
            typed.append(micros.cast(pl.Datetime("us", "UTC")))
    return frame.with_columns(typed) if typed else frame


def read_polars(spec: ColumnSpec, frame: pl.DataFrame, prefix: str) -> Column:
    """The `Column` for `spec` from a frame holding the columns of `polars_exprs`."""
    if spec.is_date:
        return read_dates(spec, frame.get_column(f"{prefix}t").to_list())
    null = frame.get_column(f"{prefix}n").to_numpy()
    if spec.type == "text":
        texts = frame.get_column(f"{prefix}t").to_numpy().astype(object, copy=False)
        return Column(spec, texts=texts, null=null)
    if spec.type == "category":
        codes = frame.get_column(f"{prefix}c").to_numpy()
        return Column(spec, codes=codes, null=null)
    numbers = frame.get_column(f"{prefix}v").to_numpy()
    unreadable = frame.get_column(f"{prefix}u").to_numpy()
    return Column(spec, numbers=numbers, null=null, unreadable=unreadable)
