"""Reading a table file (CSV or Parquet) lazily, with its header and its rows checked against
the data contract: what `prepare` and batch `predict` read their input through.

Every problem found is reported at once, naming the file, the column (the user's own name),
what was expected, what was found and the lines (CSV) or rows (Parquet) where it was found.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from . import contract, frames
from .errors import DataFileError, DataSchemaError, Issue, first_line
from .schema import ColumnSpec

__all__ = ["PREFIX", "TableReader", "bad_utf8_line"]

_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PREFIX = "\x1f{}"  # the contract's arrays, in names no schema column can have


class TableReader:
    """Reads a CSV or Parquet file lazily; names the file, its lines and its values in errors."""

    def __init__(
        self, path: Path, *, null_values: Sequence[str] = ("", "NA"), hint: str | None = None
    ) -> None:
        self.path = path
        self.hint = hint  # what to do about rows that break the rules, where they come from
        self.kind = _SUFFIXES.get(path.suffix.lower())
        if self.kind is None:
            raise DataFileError(
                f"{path}: unsupported file type {path.suffix or '(none)'!r}",
                hint="use a .csv (comma-separated, with a header) or .parquet file",
            )
        if path.is_dir():
            raise DataFileError(f"{path}: is a folder, not a data file", hint="name the file")
        if not path.exists():
            raise DataFileError(
                f"{path}: file not found", hint="check the path, or run `make prepare`"
            )
        try:
            with path.open("rb") as handle:
                head = handle.read(1 << 16)
        except OSError as exc:
            raise DataFileError(
                f"{path}: cannot read: {exc.strerror or exc}",
                hint="check the file's permissions",
            ) from None
        self.null_values = list(null_values)
        if self.kind == "csv":
            self.header = _csv_header(path, head)
            self.line_numbers, self._rows = _check_csv_structure(path, len(self.header))
        else:
            self.line_numbers, self._rows = False, None
        self.schema = self._raw_schema()
        if self.kind != "csv":
            self.header = list(self.schema.names())

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

    def scan(self, *, infer: Sequence[str] = ()) -> pl.LazyFrame:
        """The file as a lazy frame: a CSV's columns as text, but those in `infer` typed."""
        if self.kind == "csv":
            if not infer:
                return pl.scan_csv(self.path, infer_schema=False, null_values=self.null_values)
            # Types inferred once, from the first rows, then fixed: a later row that does not
            # fit fails the read with a message naming the column, rather than passing as text.
            strings = {name: pl.String for name in self.header if name not in infer}
            sample = pl.scan_csv(
                self.path,
                infer_schema_length=10_000,
                schema_overrides=strings,
                null_values=self.null_values,
            ).collect_schema()
            return pl.scan_csv(self.path, schema=sample, null_values=self.null_values)
        return pl.scan_parquet(self.path)

    def _raw_schema(self) -> pl.Schema:
        try:
            return self.scan().collect_schema()
        except pl.exceptions.NoDataError:
            raise DataFileError(f"{self.path}: the file is empty; expected a header row") from None
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataFileError(
                f"{self.path}: cannot read as {self.kind}: {first_line(exc)}"
            ) from None

    def header_issues(
        self, specs: Sequence[ColumnSpec], allowed: Sequence[str] | None
    ) -> list[Issue]:
        """Columns the schema needs but the file lacks or holds with an unusable type, and (if
        `allowed`) columns the schema does not declare."""
        found = list(self.schema.names())
        issues = []
        for spec in specs:
            if spec.name not in found:
                shown = ", ".join(found[:30]) + (" ..." if len(found) > 30 else "")
                issues.append(Issue(spec.name, f"missing from the file (found columns: {shown})"))
            elif not frames.castable(self.schema[spec.name], spec):
                found_type = self.schema[spec.name]
                issues.append(
                    Issue(spec.name, f"expected {contract.expected(spec)}, found {found_type}")
                )
        if allowed is not None:
            issues += [
                Issue(name, "not in the schema; list it under `ignore` or remove it")
                for name in found
                if name not in allowed
            ]
        return issues

    def checkable(self, specs: Sequence[ColumnSpec]) -> list[ColumnSpec]:
        """The specs whose columns are in the file with a usable type."""
        return [
            s for s in specs if s.name in self.schema and frames.castable(self.schema[s.name], s)
        ]

    def contract_exprs(self, specs: Sequence[ColumnSpec]) -> list[pl.Expr]:
        """The data contract's arrays for `specs`, as expressions over the raw columns."""
        return [
            expr
            for i, spec in enumerate(specs)
            for expr in frames.polars_exprs(spec, PREFIX.format(i))
        ]

    def check(
        self,
        frame: pl.DataFrame,
        specs: Sequence[ColumnSpec],
        *,
        first_row: int = 0,
        allow_null: Sequence[str] = (),
        more_issues: Sequence[Issue] = (),
    ) -> list[contract.Column]:
        """Run the data contract on a frame of `contract_exprs` arrays; raise on any problem.

        `first_row` is the file row of the frame's first row, for a frame that is one chunk.
        """
        columns = [
            frames.read_polars(spec, frame, PREFIX.format(i)) for i, spec in enumerate(specs)
        ]
        faults = contract.check(columns, allow_null=allow_null)
        issues = list(more_issues)
        if faults:
            found = self._found(faults, first_row)
            issues += contract.issues(
                faults,
                lambda column, rows: found.get(column, {}).get("rows", ""),
                row_label=self.row_label,
                row_number=lambda i: self.row_number(i + first_row),
            )
        if issues:
            raise DataSchemaError(str(self.path), issues, hint=self.hint)
        return columns

    def _found(self, faults: Sequence[contract.Fault], first_row: int) -> dict[str, dict[str, str]]:
        """The raw text of the rows named in `faults`, read again from the file (errors only)."""
        wanted = sorted({first_row + r for f in faults for r in f.rows})
        names = sorted({f.column for f in faults})
        values = (
            self.scan()
            .with_row_index("__row")
            .filter(pl.col("__row").is_in(wanted))
            .select("__row", *(pl.col(n).cast(pl.String) for n in names))
            .collect()
        )
        index = {row: i for i, row in enumerate(values.get_column("__row").to_list())}
        shown: dict[str, dict[str, str]] = {}
        for fault in faults:
            column = values.get_column(fault.column).to_list()
            texts = dict.fromkeys(
                "missing"
                if column[index[first_row + r]] is None
                else repr(column[index[first_row + r]][:40])
                for r in fault.rows
                if first_row + r in index
            )
            shown.setdefault(fault.column, {})["rows"] = ", ".join(list(texts)[:3])
        return shown


def _csv_header(path: Path, head: bytes) -> list[str]:
    """The header's column names exactly as written; duplicates and bad bytes are refused."""
    text = head.removeprefix(b"\xef\xbb\xbf")
    if not text.strip():
        raise DataFileError(f"{path}: the file is empty; expected a header row")
    line = text.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"{path}: line 1 is not UTF-8 text (byte {line[exc.start]:#04x} at column "
            f"{exc.start + 1})",
            hint="save the file as UTF-8 (most editors and spreadsheets offer it)",
        ) from None
    names = next(csv.reader([decoded]), [])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        shown = ", ".join(f"'{n}' (columns {_positions(names, n)})" for n in duplicates)
        raise DataFileError(
            f"{path}: the header names a column more than once: {shown}",
            hint="give every column its own name in the file's first line",
        )
    return names


def _positions(names: Sequence[str], name: str) -> str:
    return ", ".join(str(i + 1) for i, n in enumerate(names) if n == name)


def bad_utf8_line(path: Path) -> str | None:
    """The first line of `path` that is not UTF-8, as `line N`: read only on the error path."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {number} is not UTF-8 text (byte {line[exc.start]:#04x})"
    return None


def _check_csv_structure(path: Path, expected: int) -> tuple[bool, int | None]:
    """Reject ragged rows, naming their lines; return whether lines map one-to-one to rows,
    and if so how many data rows there are.

    Counting separators outside quotes is exact unless a quoted field spans lines; such files
    are left to the CSV parser, and their problems are reported by row instead of line. One
    streaming pass: only counts are kept, never the lines.
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
    line = pl.col("line")
    fields = line.str.replace_all(r'"[^"]*"', "").str.count_matches(",") + 1
    ragged = line.is_not_null() & (fields != expected)
    try:
        stats = lines.select(
            rows=pl.len(),
            odd_quotes=(line.str.count_matches('"') % 2 == 1).any(),
            ragged=ragged.sum(),
        ).collect(engine="streaming")
        count = stats.item(0, "ragged")
        shown = (  # a second pass only when there is something to show
            lines.with_row_index("index")
            .filter(ragged)
            .head(5)
            .select(pl.col("index"), fields.alias("fields"))
            .collect(engine="streaming")
            if count and not stats.item(0, "odd_quotes")
            else None
        )
    except pl.exceptions.PolarsError as exc:
        where = bad_utf8_line(path)
        if where:
            raise DataFileError(
                f"{path}: {where}",
                hint="save the file as UTF-8 (most editors and spreadsheets offer it)",
            ) from None
        raise DataFileError(f"{path}: cannot parse: {first_line(exc)}") from None
    if stats.item(0, "odd_quotes"):
        return False, None
    if shown is not None:
        where = ", ".join(f"line {i + 1} has {n}" for i, n in shown.iter_rows())
        more = f" and {count - 5} more" if count > 5 else ""
        raise DataFileError(
            f"{path}: {count} rows do not have the header's {expected} fields ({where}{more})",
            hint="every line needs one value per header column; quote values that contain commas",
        )
    return True, stats.item(0, "rows") - 1
