"""Data preparation with Polars: scan, check against the dataset schema, split, write.

Every check runs in one lazy query over the raw file, so a 10-million-row CSV is parsed once;
every problem found is reported at once, naming the file, the column, what was expected, what
was found and the lines (CSV) or rows (Parquet) where it was found.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from ._fs import atomic_path, sha256_file
from .card import MISSING_CATEGORY
from .errors import DataFileError, DataSchemaError, Issue
from .schema import ColumnSpec, DatasetSchema

__all__ = [
    "PrepareManifest",
    "TableReader",
    "flag_names",
    "prepare_dataset",
    "read_dataset",
    "split_rows",
    "to_model_inputs",
]

TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
MANIFEST_FILE = "manifest.json"
_FLAG = "__issue_{}"
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class PrepareManifest(BaseModel):
    """What `prepare` read and wrote: enough to tell whether its outputs are current."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    source: str
    source_sha256: str
    rows_in: int
    rows_dropped_missing_target: int
    rows_train: int
    rows_test: int
    test_fraction: float
    seed: int
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Check:
    column: str
    message: str


class TableReader:
    """Reads a CSV or Parquet file lazily and turns raw columns into typed, checked ones."""

    def __init__(self, path: Path, *, null_values: Sequence[str] = ("", "NA")) -> None:
        self.path = path
        self.kind = _SUFFIXES.get(path.suffix.lower())
        if self.kind is None:
            raise DataFileError(
                f"{path}: unsupported file type {path.suffix or '(none)'!r}",
                hint="use a .csv (comma-separated, with a header) or .parquet file",
            )
        if not path.is_file():
            raise DataFileError(
                f"{path}: file not found", hint="check the path, or run `make prepare`"
            )
        self.null_values = list(null_values)
        self.line_numbers, self._rows = (
            _check_csv_structure(path) if self.kind == "csv" else (False, None)
        )
        self.schema = self._raw_schema()

    @property
    def row_label(self) -> str:
        """How rows are numbered in messages: file lines for a CSV, data rows otherwise."""
        return "line" if self.line_numbers else "row"

    def row_number(self, index: int) -> int:
        """The number a user sees for the 0-based data row `index`."""
        return index + 2 if self.line_numbers else index + 1

    def count_rows(self) -> int:
        """How many data rows the file has, without reading it again where that can be avoided."""
        if self._rows is not None:
            return self._rows
        return int(self.scan().select(pl.len()).collect().item())

    def scan(self) -> pl.LazyFrame:
        """The file as a lazy frame of raw columns (all strings for a CSV)."""
        if self.kind == "csv":
            return pl.scan_csv(
                self.path,
                infer_schema=False,
                null_values=self.null_values,
                raise_if_empty=True,
            )
        return pl.scan_parquet(self.path)

    def _raw_schema(self) -> pl.Schema:
        try:
            return self.scan().collect_schema()
        except pl.exceptions.NoDataError:
            raise DataFileError(f"{self.path}: the file is empty; expected a header row") from None
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataFileError(
                f"{self.path}: cannot read as {self.kind}: {_first_line(exc)}"
            ) from None

    def header_issues(self, required: Sequence[str], allowed: Sequence[str] | None) -> list[Issue]:
        """Columns the schema needs but the file lacks, and (if `allowed`) undeclared ones."""
        found = list(self.schema.names())
        issues = [
            Issue(name, f"missing from the file (found columns: {', '.join(found)})")
            for name in required
            if name not in found
        ]
        if allowed is not None:
            issues += [
                Issue(
                    name, "not in the schema; list it under `ignore` in dataset.toml or remove it"
                )
                for name in found
                if name not in allowed
            ]
        return issues

    def typed(
        self, frame: pl.LazyFrame, specs: Sequence[ColumnSpec], *, target: str | None = None
    ) -> tuple[pl.LazyFrame, list[_Check]]:
        """Add checked, typed versions of `specs` columns and one boolean flag per check.

        A null target is not flagged: rows without a target are dropped, and counted, later.
        """
        checks: list[_Check] = []
        exprs: list[pl.Expr] = []
        flags: list[pl.Expr] = []
        dtype_issues: list[Issue] = []

        def flag(spec: ColumnSpec, condition: pl.Expr, message: str) -> None:
            flags.append(condition.fill_null(value=False).alias(_FLAG.format(len(checks))))
            checks.append(_Check(spec.name, message))

        for spec in specs:
            raw = pl.col(spec.name)
            dtype = self.schema[spec.name]
            if not _castable(dtype, spec):
                dtype_issues.append(Issue(spec.name, f"expected {_expected(spec)}, found {dtype}"))
                continue
            if not spec.nullable and spec.name != target:
                flag(spec, raw.is_null(), "missing value, but the schema says nullable = false")
            if spec.type == "category":
                value = raw.cast(pl.String)
                allowed = ", ".join(spec.categories or ())
                noun = "label" if spec.name == target else "category"
                flag(
                    spec,
                    ~value.is_in(list(spec.categories or ())),
                    f"unknown {noun}; expected one of: {allowed}",
                )
                exprs.append(value.alias(spec.name))
                continue
            number = raw.cast(pl.Float64, strict=False)
            flag(spec, raw.is_not_null() & number.is_null(), f"expected {_expected(spec)}")
            flag(
                spec,
                ~number.is_finite(),
                "not a finite number (NaN or infinity); write missing values as empty or NA",
            )
            if spec.type == "integer":
                flag(
                    spec, number.is_finite() & (number != number.floor()), "expected a whole number"
                )
            if spec.min is not None:
                flag(
                    spec,
                    number.is_finite() & (number < spec.min),
                    f"below the minimum {spec.min:g}",
                )
            if spec.max is not None:
                flag(
                    spec,
                    number.is_finite() & (number > spec.max),
                    f"above the maximum {spec.max:g}",
                )
            dtype_out = pl.Int64 if spec.type == "integer" else pl.Float64
            exprs.append(
                pl.when(number.is_finite())
                .then(number)
                .otherwise(None)
                .cast(dtype_out)
                .alias(spec.name)
            )
        if dtype_issues:
            raise DataSchemaError(str(self.path), dtype_issues)
        return frame.with_columns(*flags).with_columns(*exprs), checks

    def raise_on_flags(
        self, frame: pl.DataFrame, checks: Sequence[_Check], *, row_index: str | None = None
    ) -> pl.DataFrame:
        """Raise one `DataSchemaError` naming every failed check; else drop the flag columns.

        `row_index` names a column holding each row's 0-based position in the file, for a
        frame that is one chunk of it.
        """
        names = flag_names(checks)
        counts = frame.select(pl.col(names).sum()).row(0) if names else ()
        issues = []
        for name, check, count in zip(names, checks, counts, strict=True):
            if not count:
                continue
            index = frame.get_column(name).arg_true().head(5)
            if row_index is not None:
                index = frame.get_column(row_index).gather(index)
            rows = [self.row_number(i) for i in index]
            found = self._raw_values(check.column, index.to_list())
            message = f"{check.message}; found {found}"
            issues.append(Issue(check.column, message, rows, self.row_label, count))
        if issues:
            raise DataSchemaError(str(self.path), issues)
        return frame.drop(names)

    def _raw_values(self, column: str, index: Sequence[int]) -> str:
        values = (
            self.scan()
            .with_row_index("__row")
            .filter(pl.col("__row").is_in(list(index)))
            .select(pl.col(column).cast(pl.String))
            .collect()
            .get_column(column)
        )
        shown = dict.fromkeys("missing" if v is None else repr(v[:40]) for v in values)
        return ", ".join(list(shown)[:3])


def flag_names(checks: Sequence[_Check]) -> list[str]:
    """The names of the flag columns that `TableReader.typed` adds for `checks`."""
    return [_FLAG.format(i) for i in range(len(checks))]


def _castable(dtype: pl.DataType, spec: ColumnSpec) -> bool:
    if dtype == pl.String or dtype == pl.Null:
        return True
    if spec.type == "category":
        return (
            isinstance(dtype, pl.Categorical | pl.Enum) or dtype.is_integer() or dtype == pl.Boolean
        )
    return dtype.is_numeric() or dtype == pl.Boolean


def _expected(spec: ColumnSpec) -> str:
    return {"float": "a number", "integer": "a whole number", "category": "a category label"}[
        spec.type
    ]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_csv_structure(path: Path) -> tuple[bool, int | None]:
    """Reject ragged rows, naming their lines; return whether lines map one-to-one to rows,
    and if so how many data rows there are.

    Counting separators outside quotes is exact unless a quoted field spans lines; such files
    are left to the CSV parser, and their problems are reported by row instead of line.
    """
    lines = pl.scan_csv(
        path,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        infer_schema=False,
        raise_if_empty=False,
    )
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty; expected a header row")
    line = pl.col("line")
    try:
        stats = (
            lines.with_row_index("index")
            .with_columns(
                fields=line.str.replace_all(r'"[^"]*"', "").str.count_matches(",") + 1,
                odd_quotes=line.str.count_matches('"') % 2 == 1,
            )
            .collect()
        )
    except pl.exceptions.PolarsError as exc:
        raise DataFileError(f"{path}: cannot parse: {_first_line(exc)}") from None
    if stats.get_column("odd_quotes").any():
        return False, None
    expected = stats.item(0, "fields")
    ragged = stats.filter(line.is_not_null() & (pl.col("fields") != expected))
    if ragged.height:
        shown = ", ".join(
            f"line {i + 1} has {n}" for i, n in ragged.head(5).select("index", "fields").iter_rows()
        )
        more = f" and {ragged.height - 5} more" if ragged.height > 5 else ""
        raise DataFileError(
            f"{path}: {ragged.height} rows do not have the header's {expected} fields "
            f"({shown}{more})",
            hint="every line needs one value per header column; quote values that contain commas",
        )
    return True, stats.height - 1


def read_dataset(schema: DatasetSchema, source: Path | None = None) -> pl.DataFrame:
    """Read the dataset, check every row against the schema, return typed target and features."""
    reader = TableReader(source or schema.source, null_values=schema.null_values)
    issues = reader.header_issues(
        [schema.target.name, *schema.feature_names], allowed=schema.columns
    )
    if issues:
        raise DataSchemaError(str(reader.path), issues)
    specs = [schema.target, *schema.features]
    frame, checks = reader.typed(reader.scan(), specs, target=schema.target.name)
    columns = [s.name for s in specs] + flag_names(checks)
    try:
        collected = frame.select(columns).collect()
    except pl.exceptions.PolarsError as exc:
        raise DataFileError(f"{reader.path}: cannot parse: {_first_line(exc)}") from None
    if collected.height == 0:
        raise DataFileError(
            f"{reader.path}: no data rows, only a header", hint="add rows of data to the file"
        )
    return reader.raise_on_flags(collected, checks)


def split_rows(frame: pl.DataFrame, schema: DatasetSchema) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A deterministic train/test split from the schema's seed, stratified for classification.

    Each class (or the whole frame, for regression) is shuffled with the seed and its first
    `round(n * test_fraction)` rows go to the test set; rows keep their file order in each set.
    """
    fraction, seed = schema.split.test_fraction, schema.split.seed
    position = pl.int_range(pl.len()).shuffle(seed=seed)
    size = pl.len()
    if schema.task == "classification":
        position, size = position.over(schema.target.name), size.over(schema.target.name)
    is_test = position < (size * fraction).round(0)
    marked = frame.with_columns(is_test.alias("__test"))
    test = marked.filter(pl.col("__test")).drop("__test")
    train = marked.filter(~pl.col("__test")).drop("__test")
    if test.height == 0 or train.height == 0:
        raise DataFileError(
            f"{schema.source}: {frame.height} rows with a target is too few to split "
            f"with test_fraction = {fraction}",
            hint="add rows, or change [split] test_fraction in dataset.toml",
        )
    return train, test


def prepare_dataset(schema: DatasetSchema, out_dir: Path) -> PrepareManifest:
    """Check, clean and split the dataset; write train/test Parquet files and a manifest.

    Nothing is written unless every check passes, and each output replaces its previous
    version atomically, so a failed run leaves earlier outputs as they were.
    """
    frame = read_dataset(schema)
    rows_in = frame.height
    frame = frame.filter(pl.col(schema.target.name).is_not_null())
    if frame.height == 0:
        raise DataSchemaError(
            str(schema.source), [Issue(schema.target.name, "every row's target is missing")]
        )
    train, test = split_rows(frame, schema)
    manifest = PrepareManifest(
        dataset=schema.name,
        source=schema.source.as_posix(),
        source_sha256=sha256_file(schema.source),
        rows_in=rows_in,
        rows_dropped_missing_target=rows_in - frame.height,
        rows_train=train.height,
        rows_test=test.height,
        test_fraction=schema.split.test_fraction,
        seed=schema.split.seed,
        columns=tuple(frame.columns),
    )
    # All three files are written to temporaries first and renamed only once all succeeded.
    with contextlib.ExitStack() as stack:
        for name, part in ((TRAIN_FILE, train), (TEST_FILE, test)):
            part.write_parquet(stack.enter_context(atomic_path(out_dir / name)), statistics=False)
        text = json.dumps(manifest.model_dump(), indent=2) + "\n"
        stack.enter_context(atomic_path(out_dir / MANIFEST_FILE)).write_text(text, encoding="utf-8")
    return manifest


def to_model_inputs(frame: pl.DataFrame, features: Sequence[ColumnSpec]) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs for checked, typed feature columns: one [n, 1] array each.

    Missing numbers become NaN (the graph imputes them), missing categories `MISSING_CATEGORY`.
    """
    inputs: dict[str, np.ndarray] = {}
    for spec in features:
        column = frame.get_column(spec.name)
        if spec.type == "category":
            # Through the codes of an Enum: no Python string is made per row.
            levels = [*(spec.categories or ()), MISSING_CATEGORY]
            codes = column.fill_null(MISSING_CATEGORY).cast(pl.Enum(levels)).to_physical()
            array = np.array(levels, dtype=object)[codes.to_numpy()]
        else:
            array = column.cast(pl.Float32).fill_null(float("nan")).to_numpy()
        inputs[spec.name] = array.reshape(-1, 1)
    return inputs
