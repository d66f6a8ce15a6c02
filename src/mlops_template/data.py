"""Data preparation with Polars: scan, check against the dataset schema, split, write.

The checks are the data contract's (`contract.py`), run over arrays that one lazy query reads
from the raw file, so a 10-million-row CSV is parsed once; every problem found, in the header
and in the rows, is reported at once, naming the file, the column (the user's own name), what
was expected, what was found and the lines (CSV) or rows (Parquet) where it was found.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from . import contract
from ._fs import current_version, publish_or_explain, sha256_file
from .errors import DataFileError, DataSchemaError, Issue, first_line
from .schema import ColumnSpec, DatasetSchema

__all__ = [
    "MANIFEST_FILE",
    "TEST_FILE",
    "TRAIN_FILE",
    "PrepareManifest",
    "TableReader",
    "load_prepared",
    "prepare_dataset",
    "read_dataset",
    "schema_fingerprint",
    "split_rows",
    "to_model_inputs",
]

TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
MANIFEST_FILE = "manifest.json"
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_PREFIX = "\x1f{}"  # the contract's arrays, in names no schema column can have


class PrepareManifest(BaseModel):
    """What `prepare` read and wrote: enough to tell whether its outputs are current."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    source: str
    source_sha256: str
    schema_sha256: str
    rows_in: int
    rows_dropped_missing_target: int
    rows_train: int
    rows_test: int
    test_fraction: float
    seed: int
    columns: tuple[str, ...]


def schema_fingerprint(schema: DatasetSchema) -> str:
    """The sha256 of what the prepared data depends on in the schema (not the model's settings)."""
    fields = schema.model_dump(mode="json", exclude={"source", "model"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class TableReader:
    """Reads a CSV or Parquet file lazily; names the file, its lines and its values in errors."""

    def __init__(self, path: Path, *, null_values: Sequence[str] = ("", "NA")) -> None:
        self.path = path
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
            elif not contract.castable(self.schema[spec.name], spec):
                found_type = self.schema[spec.name]
                issues.append(
                    Issue(spec.name, f"expected {contract.expected(spec)}, found {found_type}")
                )
        if allowed is not None:
            issues += [
                Issue(
                    name, "not in the schema; list it under `ignore` in dataset.toml or remove it"
                )
                for name in found
                if name not in allowed
            ]
        return issues

    def checkable(self, specs: Sequence[ColumnSpec]) -> list[ColumnSpec]:
        """The specs whose columns are in the file with a usable type."""
        return [
            s for s in specs if s.name in self.schema and contract.castable(self.schema[s.name], s)
        ]

    def contract_exprs(self, specs: Sequence[ColumnSpec]) -> list[pl.Expr]:
        """The data contract's arrays for `specs`, as expressions over the raw columns."""
        return [
            expr
            for i, spec in enumerate(specs)
            for expr in contract.polars_exprs(spec, _PREFIX.format(i))
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
            contract.read_polars(spec, frame, _PREFIX.format(i)) for i, spec in enumerate(specs)
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
            raise DataSchemaError(str(self.path), issues)
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


def _bad_utf8_line(path: Path) -> str | None:
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
        where = _bad_utf8_line(path)
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


def read_dataset(schema: DatasetSchema, source: Path | None = None) -> pl.DataFrame:
    """Read the dataset, check every row against the schema, return typed target and features.

    Problems in the header and in the rows are reported together, in one error.
    """
    reader = TableReader(source or schema.source, null_values=schema.null_values)
    specs = [schema.target, *schema.features]
    header = reader.header_issues(specs, allowed=schema.columns)
    present = reader.checkable(specs)
    typed = [contract.typed_expr(spec) for spec in present]
    try:
        arrays = reader.scan().select(*typed, *reader.contract_exprs(present)).collect()
    except pl.exceptions.PolarsError as exc:
        where = _bad_utf8_line(reader.path) if reader.kind == "csv" else None
        raise DataFileError(
            f"{reader.path}: {where or 'cannot parse: ' + first_line(exc)}"
        ) from None
    reader.check(arrays, present, allow_null=[schema.target.name], more_issues=header)
    if arrays.height == 0:
        raise DataFileError(
            f"{reader.path}: no data rows, only a header", hint="add rows of data to the file"
        )
    return arrays.select(spec.name for spec in present)


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

    Nothing is written unless every check passes; the three files are published together in
    one atomic step (`out_dir/current`), so a failed or killed run leaves the previous set.
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
        schema_sha256=schema_fingerprint(schema),
        rows_in=rows_in,
        rows_dropped_missing_target=rows_in - frame.height,
        rows_train=train.height,
        rows_test=test.height,
        test_fraction=schema.split.test_fraction,
        seed=schema.split.seed,
        columns=tuple(frame.columns),
    )

    def write(folder: Path) -> None:
        train.write_parquet(folder / TRAIN_FILE, statistics=False)
        test.write_parquet(folder / TEST_FILE, statistics=False)
        text = json.dumps(manifest.model_dump(), indent=2) + "\n"
        (folder / MANIFEST_FILE).write_text(text, encoding="utf-8")

    publish_or_explain(out_dir, write, "the prepared data", "PROCESSED_DIR")
    return manifest


def load_prepared(
    processed_dir: Path, schema: DatasetSchema | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, PrepareManifest]:
    """The current train and test splits and their manifest, read from one published set.

    With `schema`, refuse a set prepared from another schema or another version of the data.
    """
    folder = current_version(processed_dir)
    paths = [folder / name for name in (TRAIN_FILE, TEST_FILE, MANIFEST_FILE)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataFileError(
            f"{missing[0]}: prepared data not found", hint="run `make prepare` first"
        )
    try:
        manifest = PrepareManifest.model_validate_json(paths[2].read_text(encoding="utf-8"))
    except (ValidationError, OSError, UnicodeDecodeError):
        raise DataFileError(
            f"{paths[2]}: not a valid manifest (damaged, or written by an older version)",
            hint="run `make prepare` to prepare the data again",
        ) from None
    if schema is not None:
        stale = manifest.schema_sha256 != schema_fingerprint(schema)
        if not stale and schema.source.is_file():
            stale = manifest.source_sha256 != sha256_file(schema.source)
        if stale:
            raise DataFileError(
                f"{processed_dir}: the prepared data is from another version of the dataset "
                f"({manifest.dataset}, {manifest.source}) than dataset.toml describes now",
                hint="run `make prepare` first",
            )
    try:
        return pl.read_parquet(paths[0]), pl.read_parquet(paths[1]), manifest
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataFileError(
            f"{folder}: cannot read the prepared data: {first_line(exc)}",
            hint="run `make prepare` to prepare the data again",
        ) from None


def to_model_inputs(
    frame: pl.DataFrame, features: Sequence[ColumnSpec], names: dict[str, str]
) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs (keyed by `names[feature]`) for checked feature columns, encoded
    by the data contract as every other path encodes them, labels as Python strings: what
    scikit-learn fits on is what the graph is fed."""
    prefixes = [_PREFIX.format(i) for i in range(len(features))]
    read = frame.select(
        expr
        for spec, prefix in zip(features, prefixes, strict=True)
        for expr in contract.polars_exprs(spec, prefix)
    )
    inputs = {}
    for spec, prefix in zip(features, prefixes, strict=True):
        array = contract.encode(contract.read_polars(spec, read, prefix))
        if array.dtype.kind == "S":  # category labels, as UTF-8 bytes
            array = np.char.decode(array, "utf-8").astype(object)
        inputs[names[spec.name]] = array
    return inputs
