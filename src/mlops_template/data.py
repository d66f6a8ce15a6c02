"""Data preparation with Polars: scan, check against the dataset schema, split, write.

The checks are the data contract's (`contract.py`), run over arrays that one lazy query reads
from the raw file, so a 10-million-row CSV is parsed once; every problem found, in the header
and in the rows, is reported at once, naming the file, the column (the user's own name), what
was expected, what was found and the lines (CSV) or rows (Parquet) where it was found.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from . import contract, frames
from ._fs import current_version, publish_or_explain, sha256_file
from .errors import DataFileError, DataSchemaError, Issue, first_line
from .schema import ColumnSpec, DatasetSchema
from .tables import PREFIX, TableReader, bad_utf8_line

__all__ = [
    "MANIFEST_FILE",
    "TEST_FILE",
    "TRAIN_FILE",
    "PrepareManifest",
    "load_prepared",
    "prepare_dataset",
    "read_columns",
    "read_dataset",
    "schema_fingerprint",
    "split_rows",
    "to_model_inputs",
]

TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
MANIFEST_FILE = "manifest.json"


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


def read_dataset(schema: DatasetSchema, source: Path | None = None) -> pl.DataFrame:
    """Read the dataset, check every row against the schema, return typed target and features.

    Problems in the header and in the rows are reported together, in one error.
    """
    reader = TableReader(
        source or schema.source, null_values=schema.null_values, hint=schema.data_hint
    )
    specs = [schema.target, *schema.features]
    header = reader.header_issues(specs, allowed=schema.columns)
    present = reader.checkable(specs)
    typed = [frames.typed_expr(spec) for spec in present]
    group = schema.split.group
    ignored_group = [group] if group is not None and group in schema.ignore else []
    for group in ignored_group:  # read for the split alone, as text (a feature is read anyway)
        if group in reader.header:
            typed.append(pl.col(group).cast(pl.String))
        else:
            header.append(Issue(group, "missing from the file, which [split] group names"))
    try:
        arrays = reader.scan().select(*typed, *reader.contract_exprs(present)).collect()
    except pl.exceptions.PolarsError as exc:
        where = bad_utf8_line(reader.path) if reader.kind == "csv" else None
        raise DataFileError(
            f"{reader.path}: {where or 'cannot parse: ' + first_line(exc)}"
        ) from None
    columns = reader.check(arrays, present, allow_null=[schema.target.name], more_issues=header)
    if arrays.height == 0:
        raise DataFileError(
            f"{reader.path}: no data rows, only a header", hint="add rows of data to the file"
        )
    kept = [spec.name for spec in present] + ignored_group
    return frames.with_typed_dates(arrays.select(kept), columns)


def split_rows(frame: pl.DataFrame, schema: DatasetSchema) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A deterministic train/test split from the schema's seed, stratified for classification.

    Each class (or the whole frame, for regression) is shuffled with the seed and its first
    `round(n * test_fraction)` rows go to the test set; rows keep their file order in each set.
    With `split.group`, the values of that column are shuffled instead, and the first
    `round(n * test_fraction)` of them take all their rows to the test set (no stratification).
    """
    fraction, seed, group = schema.split.test_fraction, schema.split.seed, schema.split.group
    if group is not None:
        values = frame.get_column(group).unique(maintain_order=True).shuffle(seed=seed)
        chosen = values.head(round(len(values) * fraction)).implode()
        is_test = pl.col(group).is_in(chosen, nulls_equal=True)  # missing is a group too
    else:
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
            hint=f"add rows, or change [split] test_fraction in {schema.file}",
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
            str(schema.source),
            [Issue(schema.target.name, "every row's target is missing")],
            hint=schema.data_hint,
        )
    train, test = split_rows(frame, schema)
    if schema.split.group in schema.ignore:  # read for the split alone
        train, test = train.drop(schema.split.group), test.drop(schema.split.group)
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
        columns=tuple(train.columns),
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
                f"({manifest.dataset}, {manifest.source}) than {schema.file} describes now",
                hint="run `make prepare` first",
            )
    try:
        return pl.read_parquet(paths[0]), pl.read_parquet(paths[1]), manifest
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataFileError(
            f"{folder}: cannot read the prepared data: {first_line(exc)}",
            hint="run `make prepare` to prepare the data again",
        ) from None


def read_columns(frame: pl.DataFrame, features: Sequence[ColumnSpec]) -> list[contract.Column]:
    """Checked feature columns of a frame, read by the data contract as every path reads them."""
    prefixes = [PREFIX.format(i) for i in range(len(features))]
    read = frame.select(
        expr
        for spec, prefix in zip(features, prefixes, strict=True)
        for expr in frames.polars_exprs(spec, prefix)
    )
    return [
        frames.read_polars(spec, read, prefix)
        for spec, prefix in zip(features, prefixes, strict=True)
    ]


def to_model_inputs(
    frame: pl.DataFrame, features: Sequence[ColumnSpec], names: dict[str, str]
) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs (keyed by `names[feature]`) for checked feature columns, encoded
    by the data contract as every other path encodes them, labels as Python strings: what
    scikit-learn fits on is what the graph is fed."""
    inputs = {}
    for column in read_columns(frame, features):
        array = contract.encode(column)
        if array.dtype.kind == "S":  # category labels, as UTF-8 bytes
            array = np.char.decode(array, "utf-8").astype(object)
        inputs[names[column.spec.name]] = array
    return inputs
