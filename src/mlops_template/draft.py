"""A first `dataset.toml` for a data file: each column's type, nullability, bounds or
categories guessed from what the file holds, with a comment on each guess to check.

The draft is checked like any schema before it is printed, so what it proposes loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .contract import Column, read_dates
from .errors import ConfigError
from .schema import ColumnSpec, canonical_number, parse_schema, toml_key, toml_string
from .tables import TableReader

__all__ = ["draft_schema"]

MAX_CATEGORIES = 20  # more distinct labels than this, and a string column is proposed as text


def draft_schema(
    path: Path, target: str, *, null_values: Sequence[str] = ("", "NA"), relative_to: Path
) -> str:
    """The text of a `dataset.toml` for `path`, predicting `target`."""
    reader = TableReader(path, null_values=null_values, hint="check the file")
    names = list(reader.header)
    if target not in names:
        raise ConfigError(
            f"--target {target!r}: no such column in {path}",
            hint=f"name one of its columns: {', '.join(names[:30])}",
        )
    frame = reader.scan(infer=names).collect()
    rows = frame.height
    lines = [
        f"# Drafted from {path.name} ({rows:,} rows): check each guess, then edit freely.",
        "# Bounds (min, max) are as observed: widen them to what may come.",
        f"name = {toml_string(_dataset_name(path))}",
        f"source = {toml_string(_relative(path, relative_to))}",
        f"null_values = [{', '.join(toml_string(v) for v in null_values)}]",
    ]
    ignored: list[tuple[str, str]] = []
    features: list[list[str]] = []
    for name in names:
        column = frame[name]
        if name == target:
            continue
        days = _days(column)
        reason = _reason_to_ignore(column, rows, dated=days is not None)
        if reason:
            ignored.append((name, reason))
        else:
            header = f"features.{toml_key(name)}"
            table = _column(header, column, feature=True) if days is None else _dates(header, *days)
            features.append(table)
    lines.append("ignore = [" + ", ".join(toml_string(name) for name, _ in ignored) + "]")
    lines += [f"# ignored: {toml_string(name)}: {why}" for name, why in ignored]
    lines += ["", *_column("target", frame[target], feature=False)]
    for table in features:
        lines += ["", *table]
    if not features:
        raise ConfigError(
            f"{path}: no column besides {target!r} can be a feature",
            hint="every other column is constant, empty or an identifier; check the file",
        )
    text = "\n".join(lines) + "\n"
    parse_schema(text, relative_to / "dataset.toml")  # a draft that would not load is a bug
    return text


def _reason_to_ignore(column: pl.Series, rows: int, *, dated: bool) -> str | None:
    present = column.drop_nulls()
    if present.is_empty():
        return "always missing"
    if present.n_unique() == 1:
        return f"always {present[0]!r}: a constant tells the model nothing"
    # A code on every row that no other row shares (prose, which has spaces, is text).
    code = column.dtype.is_integer() or (
        column.dtype == pl.String and not present.str.contains(r"\s").any()
    )
    if dated:
        return None  # a date on every row is a time series' clock, not an identifier
    if code and rows > MAX_CATEGORIES and present.n_unique() == rows:
        return "a different value on every row: an identifier?"
    if column.dtype == pl.String and _looks_like_dates(present):
        return "dates, but not ISO 8601: write them as 2024-05-31 to make them a feature"
    if column.dtype.is_temporal():
        return f"{column.dtype}: not a feature type (derive numbers from it)"
    return None


def _days(column: pl.Series) -> tuple[Column, bool] | None:
    """The column read by the data contract as dates (or as times, where a date will not do),
    and whether it has missing values; None if it does not hold ISO 8601 dates."""
    if not (column.dtype in (pl.String, pl.Date) or isinstance(column.dtype, pl.Datetime)):
        return None
    texts = column.cast(pl.String).to_list()
    if column.drop_nulls().is_empty():
        return None
    for kind in ("date", "datetime"):
        read = read_dates(ColumnSpec(name=column.name, type=kind), texts)
        if read.unreadable is None:
            return read, read.null is not None
    return None


def _dates(header: str, column: Column, nullable: bool) -> list[str]:
    """A date or datetime feature's table, its bounds as TOML dates."""
    assert column.numbers is not None
    low, high = np.nanmin(column.numbers), np.nanmax(column.numbers)
    body = [f'type = "{column.spec.type}"', f"min = {_date(column, low)}"]
    body += [f"max = {_date(column, high)}", *(["nullable = true"] if nullable else [])]
    kind = "dates" if column.spec.type == "date" else "times"
    note = f"# ISO 8601 {kind}: the model takes them as days since 1970-01-01"
    return [note, f"[{header}]", *body]


def _date(column: Column, days: float) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=float(days))
    return moment.date().isoformat() if column.spec.type == "date" else moment.isoformat()


def _looks_like_dates(values: pl.Series) -> bool:
    try:  # Polars infers the format from the first values, or finds none
        return values.head(1000).str.to_datetime(strict=False).null_count() == 0
    except pl.exceptions.ComputeError:
        return False


def _column(header: str, column: pl.Series, *, feature: bool) -> list[str]:
    """A feature's (or the target's) table: type, nullable, bounds or categories, comments."""
    present = column.drop_nulls()
    distinct = present.n_unique()
    notes: list[str] = []
    body = [] if feature else [f"name = {toml_string(column.name)}"]
    if column.dtype == pl.Boolean:
        body += _categories(sorted({str(v).lower() for v in present.to_list()}))
    elif column.dtype.is_numeric():
        whole = column.dtype.is_integer() or bool((present == present.round(0)).all())
        if not feature and whole and distinct <= MAX_CATEGORIES:
            notes.append(f'{distinct} distinct numbers: classes (or type = "float": a regressor)')
            body += _categories([canonical_number(v) for v in sorted(present.unique())])
        else:
            kind = "integer" if column.dtype.is_integer() else "float"
            if feature and kind == "integer" and distinct <= 10:
                notes.append(f'{distinct} distinct numbers: codes? then type = "category"')
            body += [f'type = "{kind}"', f"min = {_number(present.min())}"]
            body.append(f"max = {_number(present.max())}")
    elif distinct <= MAX_CATEGORIES or not feature:
        body += _categories(sorted(present.cast(pl.String).unique()))
    else:
        words = present.cast(pl.String).str.count_matches(r"\S+").cast(pl.Float64)
        mean = float(words.sum()) / len(words)
        notes.append(f"{distinct:,} distinct values of {mean:.1f} words on average: text")
        body.append('type = "text"')
    if feature and column.null_count():
        body.append("nullable = true")
    if not feature:
        notes.insert(0, "The target: a category makes a classifier, a number a regressor.")
    return [*(f"# {note}" for note in notes), f"[{header}]", *body]


def _categories(labels: Sequence[Any]) -> list[str]:
    return ['type = "category"', f"categories = [{', '.join(toml_string(v) for v in labels)}]"]


def _dataset_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "dataset"


def _relative(path: Path, root: Path) -> str:
    """`path` as `dataset.toml` in `root` names it: relative, so the project can move."""
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def _number(value: Any) -> str:
    number = float(value)
    return canonical_number(number) if number.is_integer() else repr(number)
