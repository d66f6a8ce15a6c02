"""The data contract: one checker, derived from the column specs, for every way rows come in.

`prepare` and batch `predict` read files with Polars, `/predict` reads JSON records, the Open
Inference Protocol reads tensors; each *reads* its input into the same few arrays per column
(`Column`), and `check` applies the one set of rules to them, a whole column at a time (numpy,
never a Python loop per row): missing where not allowed, not a number, not finite, not whole,
out of range, unknown category. The same fault gets the same message whatever the source,
naming the user's own column; only the way rows are numbered (file lines, rows, records)
belongs to the source.

Number-like categories (`categories = [1, 2]`) match any spelling of the number: `1`, `1.0` and
`"1"` all name category `"1"`. Dates and times are ISO 8601 text wherever they come from (a
file's typed date column is read as its ISO text), read by one function, `read_dates`, into
the numbers the model takes (days since 1970-01-01, UTC).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import Issue
from .schema import ColumnSpec, day_number, show_bound

__all__ = [
    "MISSING_CATEGORY",
    "MISSING_TEXT",
    "NULL",
    "UNKNOWN",
    "Column",
    "Fault",
    "check",
    "describe_values",
    "encode",
    "expected",
    "issues",
    "levels",
    "read_dates",
    "read_values",
]

# How the ONNX graph's inputs encode a missing value: NaN for numbers (the graph imputes it),
# the empty string for categories (its own one-hot level).
MISSING_CATEGORY = ""
MISSING_TEXT = ""  # a missing text is an empty one: no terms
NULL = -1  # category code of a missing value
UNKNOWN = -2  # category code of a value that is not one of the categories
_SHOWN = 5  # rows named per fault
_FLOAT_MAX = float(np.finfo(np.float64).max)
_LISTED = 20  # categories listed in a message


@dataclass(frozen=True, slots=True)
class Column:
    """One column read from any source into arrays, ready for `check`.

    Numbers, dates and times: `numbers` (float64, dates as days since 1970-01-01; NaN where
    missing or unreadable). Categories: `codes` (int32; the index in `spec.categories`, `NULL`
    or `UNKNOWN`). Text: `texts` (Python strings; the empty string where missing or
    unreadable). `null` marks missing values and `unreadable` values of the wrong kind (text
    in a number column, a number or true/false in a category or text column); either may be
    None when no row has one.
    """

    spec: ColumnSpec
    numbers: npt.NDArray[np.float64] | None = None
    codes: npt.NDArray[np.int32] | None = None
    texts: npt.NDArray[np.object_] | None = None
    null: npt.NDArray[np.bool_] | None = None
    unreadable: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        for array in (self.numbers, self.codes, self.texts):
            if array is not None:
                return len(array)
        raise AssertionError("a Column holds one of numbers, codes and texts")


@dataclass(frozen=True, slots=True)
class Fault:
    """One rule broken in one column: where (0-based rows, the first few) and how often.

    `show_found` says whether the offending values are worth showing (a missing value or an
    infinity is not).
    """

    column: str
    message: str
    rows: tuple[int, ...]
    count: int
    show_found: bool = True


def expected(spec: ColumnSpec) -> str:
    """What a column of this type holds, as error messages say it."""
    return {
        "float": "a number",
        "integer": "a whole number",
        "category": "a category label",
        "text": "text (a string)",
        "date": "an ISO 8601 date (e.g. 2024-05-31)",
        "datetime": "an ISO 8601 date and time (e.g. 2024-05-31T14:30:00Z)",
    }[spec.type]


@dataclass(frozen=True)
class _Messages:
    """What `check` says of each fault of one column, written once per spec."""

    missing: str
    unreadable: str
    unknown: str
    unknown_label: str  # of the target, whose categories are its labels
    not_finite: str
    not_whole: str
    below: str
    above: str


@cache
def _messages(spec: ColumnSpec) -> _Messages:
    allowed = _listing(spec.categories or ())
    return _Messages(
        missing="missing value, but the schema says nullable = false",
        unreadable=f"expected {expected(spec)}",
        unknown=f"unknown category; expected one of: {allowed}",
        unknown_label=f"unknown label; expected one of: {allowed}",
        not_finite="not a finite number",
        not_whole="expected a whole number",
        below=f"{'before' if spec.is_date else 'below'} the minimum {show_bound(spec.min)}"
        if spec.min is not None
        else "",
        above=f"{'after' if spec.is_date else 'above'} the maximum {show_bound(spec.max)}"
        if spec.max is not None
        else "",
    )


def _listing(values: Sequence[str]) -> str:
    shown = ", ".join(values[:_LISTED])
    return shown + (f" and {len(values) - _LISTED} more" if len(values) > _LISTED else "")


def check(columns: Iterable[Column], *, allow_null: Iterable[str] = ()) -> list[Fault]:
    """Every rule each column breaks, in column order; an empty list when all rows are good.

    `allow_null` names columns whose missing values are allowed whatever the spec says (the
    target, whose missing rows `prepare` drops and counts).
    """
    lenient = set(allow_null)
    faults: list[Fault] = []

    def add(
        spec: ColumnSpec, mask: npt.NDArray[np.bool_] | None, message: str, show: bool = True
    ) -> None:
        if mask is None:
            return
        count = int(np.count_nonzero(mask))
        if count:
            rows = tuple(np.flatnonzero(mask)[:_SHOWN].tolist())
            faults.append(Fault(spec.name, message, rows, count, show))

    for column in columns:
        spec = column.spec
        says = _messages(spec)
        if not spec.nullable and spec.name not in lenient:
            add(spec, column.null, says.missing, False)
        add(spec, column.unreadable, says.unreadable)
        if column.texts is not None:
            continue  # any string is a text
        if column.codes is not None:
            unknown = column.codes == UNKNOWN
            if column.unreadable is not None:
                unknown &= ~column.unreadable
            unknown_message = says.unknown_label if spec.name in lenient else says.unknown
            add(spec, unknown, unknown_message)
            continue
        numbers = column.numbers
        assert numbers is not None
        # Unbounded means the largest finite floats, so that an infinity fails here too.
        low, high = spec.bounds
        lower, upper = max(low, -_FLOAT_MAX), min(high, _FLOAT_MAX)
        good = (numbers >= lower) & (numbers <= upper)  # NaN compares False, silently
        if spec.type == "integer":
            good &= numbers == np.floor(numbers)
        for mask in (column.null, column.unreadable):  # reported above, not again
            if mask is not None:
                good |= mask
        if bool(good.all()):
            continue  # the common case: a comparison or two per row, nothing more
        # Missing and unreadable values are NaN here; they are reported above, not again.
        known = np.ones(len(numbers), dtype=bool)
        for mask in (column.null, column.unreadable):
            if mask is not None:
                known &= ~mask
        finite = np.isfinite(numbers)
        add(spec, known & ~finite, says.not_finite)
        if spec.type == "integer":
            add(spec, finite & (numbers != np.floor(numbers)), says.not_whole)
        if spec.min is not None:
            add(spec, finite & (numbers < low), says.below)
        if spec.max is not None:
            add(spec, finite & (numbers > high), says.above)
    return faults


def issues(
    faults: Iterable[Fault],
    found: Callable[[str, Sequence[int]], str] | None = None,
    *,
    row_label: str = "row",
    row_number: Callable[[int], int] = lambda index: index,
) -> list[Issue]:
    """Faults as the `Issue`s a user reads: rows numbered the source's way, values shown.

    `found(column, rows)` describes the offending values (e.g. `'4x', '12'`), where the source
    can show them; a row index `i` is shown as `row_number(i)`.
    """
    out = []
    for fault in faults:
        message = fault.message
        if found is not None and fault.show_found:
            values = found(fault.column, fault.rows)
            if values:
                message += f"; found {values}"
        rows = [row_number(i) for i in fault.rows]
        out.append(Issue(fault.column, message, rows, row_label, fault.count))
    return out


def encode(column: Column) -> npt.NDArray[Any]:
    """A checked column as the ONNX graph's input: [n, 1], float32 or strings."""
    if column.texts is not None:
        return column.texts.reshape(-1, 1)
    if column.codes is not None:
        return levels(column.spec)[column.codes].reshape(-1, 1)  # NULL (-1): the missing level
    assert column.numbers is not None
    return column.numbers.astype(np.float32).reshape(-1, 1)


@cache
def levels(spec: ColumnSpec) -> npt.NDArray[Any]:
    """A category's labels, then its missing level, as the graph's string input, to gather by
    code: UTF-8 bytes of a fixed width that leaves room for a closing NUL (read-only, made once
    per spec).

    onnxruntime copies such bytes straight into its strings, up to the first NUL (no label
    holds one: the schema refuses control characters); Python strings would cost it a
    conversion per value, holding the GIL.
    """
    encoded = [label.encode() for label in (*(spec.categories or ()), MISSING_CATEGORY)]
    table = np.array(encoded, dtype=f"S{max(map(len, encoded)) + 1}")
    table.flags.writeable = False
    return table


# --- Reading JSON values (the API) -----------------------------------------------------------

_NUMBER_KINDS = frozenset({float, int})
_NONE = type(None)


@cache
def _lookup(spec: ColumnSpec, nan_is_missing: bool = False) -> dict[Any, int]:
    table: dict[Any, int] = {c: i for i, c in enumerate(spec.categories or ())}
    if spec.number_like:
        table.update({float(c): i for i, c in enumerate(spec.categories or ())})
    table[None] = NULL
    if nan_is_missing:
        table[MISSING_CATEGORY] = NULL  # no category is the empty string
    return table


def read_values(spec: ColumnSpec, values: Sequence[Any], nan_is_missing: bool = False) -> Column:
    """A column of JSON values (None where missing): numbers must be numbers, labels strings.

    Strings are not numbers and true/false is neither; a number-like category also takes a
    number, or any spelling of one. With `nan_is_missing` (the Open Inference Protocol's
    tensors), NaN is a missing number and the empty string a missing label, as well as None.
    """
    kinds = set(map(type, values))
    if spec.type == "text":
        return _read_texts(spec, values, kinds)
    if spec.is_date:
        return read_dates(spec, values, nan_is_missing)
    if spec.type == "category":
        lookup = _lookup(spec, nan_is_missing)
        allowed = {str, _NONE} | (_NUMBER_KINDS if spec.number_like else set())
        if kinds <= allowed:
            codes = np.fromiter(map(lookup.get, values, repeat(UNKNOWN)), np.int32, len(values))
            unreadable = None
            if spec.number_like and (codes == UNKNOWN).any():
                codes, unreadable = _slow_codes(spec, values, lookup)
        else:
            codes, unreadable = _slow_codes(spec, values, lookup)
        # A tensor's empty label is a missing one (`_lookup`), as much as None is.
        null = codes == NULL if _NONE in kinds or nan_is_missing else None
        return Column(spec, codes=codes, null=null, unreadable=unreadable)
    if kinds <= _NUMBER_KINDS | {_NONE}:
        try:
            numbers = np.array(values, dtype=np.float64)  # None becomes NaN
        except OverflowError:  # an integer beyond any float
            numbers = np.array([_as_float(v) for v in values], dtype=np.float64)
        # Plain JSON has no NaN, so NaN is a None there; a tensor's NaN is missing by design.
        null = np.isnan(numbers) if _NONE in kinds or nan_is_missing else None
        return Column(spec, numbers=numbers, null=null)
    # The rare case of a value of the wrong kind: find which rows, one by one.
    numbers = np.array(
        [_as_float(v) if type(v) in _NUMBER_KINDS else math.nan for v in values], np.float64
    )
    null = np.array(
        [v is None or (nan_is_missing and isinstance(v, float) and math.isnan(v)) for v in values],
        dtype=bool,
    )
    unreadable = np.array([v is not None and type(v) not in _NUMBER_KINDS for v in values], bool)
    return Column(spec, numbers=numbers, null=null, unreadable=unreadable)


def _read_texts(spec: ColumnSpec, values: Sequence[Any], kinds: set[type]) -> Column:
    """Strings are texts; None is missing (the empty string is an empty text, not missing)."""
    texts = np.fromiter(values, dtype=object, count=len(values))
    if kinds <= {str}:
        return Column(spec, texts=texts)
    null = np.fromiter((v is None for v in values), bool, len(values))
    unreadable = np.fromiter((v is not None and type(v) is not str for v in values), bool)
    texts[null | unreadable] = MISSING_TEXT
    return Column(spec, texts=texts, null=null, unreadable=unreadable)


def read_dates(spec: ColumnSpec, values: Sequence[Any], empty_is_missing: bool = False) -> Column:
    """A date or datetime column from ISO 8601 strings (None where missing): the one reading of
    dates, for files, JSON and tensors alike. A date column takes dates only (`2024-05-31`); a
    datetime column also takes a time and a zone (`2024-05-31T14:30:00+02:00`; none means UTC).
    With `empty_is_missing` (tensors), the empty string is a missing value too."""
    parse = date.fromisoformat if spec.type == "date" else datetime.fromisoformat
    days: dict[str, float] = {}
    for text in {v for v in values if type(v) is str}:  # dates repeat: each parsed once
        try:
            days[text] = day_number(parse(text)) if text.isascii() else math.nan
        except ValueError:
            days[text] = math.nan
    numbers = np.fromiter(
        (days[v] if type(v) is str else math.nan for v in values), np.float64, len(values)
    )
    null = np.fromiter(
        (v is None or (empty_is_missing and v == "") for v in values), bool, len(values)
    )
    unreadable = np.isnan(numbers) & ~null
    return Column(
        spec,
        numbers=numbers,
        null=null if null.any() else None,
        unreadable=unreadable if unreadable.any() else None,
    )


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _slow_codes(
    spec: ColumnSpec, values: Sequence[Any], lookup: dict[Any, int]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    codes = np.empty(len(values), dtype=np.int32)
    unreadable = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        kind = type(value)
        if kind is str or value is None:
            code = lookup.get(value, UNKNOWN)
            if code == UNKNOWN and spec.number_like:
                number = _number_or_none(value)
                code = UNKNOWN if number is None else lookup.get(number, UNKNOWN)
        elif kind in _NUMBER_KINDS and spec.number_like:
            code = lookup.get(value, UNKNOWN)
        else:
            code, unreadable[i] = UNKNOWN, True
        codes[i] = code
    unreadable &= codes == UNKNOWN
    return codes, unreadable


def _number_or_none(text: str | None) -> float | None:
    """A label's number as a file's reader (Polars) spells it: Python's `float` also takes
    spaces around it, `_` between digits and non-ASCII digits, which a CSV's value would not
    be read as (`" 2"` must be as unknown in a request as in a file)."""
    if text is None or not text.isascii() or "_" in text or text.strip() != text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def describe_values(values: Sequence[Any], rows: Sequence[int]) -> str:
    """The offending JSON values, shown safely: short, deduplicated, never NaN or infinity."""
    shown: dict[str, None] = {}
    for row in rows:
        value = values[row]
        if value is None:
            text = "missing"
        elif isinstance(value, float) and not math.isfinite(value):
            continue  # never echoed: not JSON, and a client's logs may choke on it
        elif isinstance(value, dict | list):
            text = "an object" if isinstance(value, dict) else "a list"
        else:
            text = repr(value)
            text = text if len(text) <= 40 else text[:37] + "..."
        shown[text] = None
    return ", ".join(list(shown)[:3])
