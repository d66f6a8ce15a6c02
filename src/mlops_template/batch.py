"""Batch prediction: score a CSV or Parquet file of any size in chunks, with bounded memory."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import polars as pl

from ._fs import atomic_path
from .data import TableReader, flag_names, to_model_inputs
from .errors import DataFileError, DataSchemaError, Issue
from .inference import OnnxModel, Prediction

__all__ = ["predict_file", "prediction_columns"]

_ROW = "__row"
_OUTPUT_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def prediction_columns(model: OnnxModel) -> list[str]:
    """Names of the columns `predict_file` adds: the prediction, then one probability per class."""
    target = model.card.target.name
    probabilities = [f"probability_{c}" for c in model.card.classes or ()]
    return [f"predicted_{target}", *probabilities]


def _as_frame(model: OnnxModel, prediction: Prediction) -> pl.DataFrame:
    names = prediction_columns(model)
    if prediction.values is not None:
        return pl.DataFrame({names[0]: prediction.values.astype("float64")})
    assert prediction.labels is not None
    assert prediction.probabilities is not None
    columns: dict[str, object] = {names[0]: pl.Series(prediction.labels, dtype=pl.String)}
    for i, name in enumerate(names[1:]):
        columns[name] = prediction.probabilities[:, i].astype("float64")
    return pl.DataFrame(columns)


def predict_file(
    model: OnnxModel,
    source: Path,
    output: Path,
    *,
    chunk_size: int = 100_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Score every row of `source` and write it, plus prediction columns, to `output`.

    Polars' streaming engine reads, checks, scores (in chunks of about `chunk_size` rows) and
    writes in one pass, so memory stays bounded whatever the file's size; `output` (CSV or
    Parquet, by its suffix) appears only once every row is scored. `on_progress(done, total)`
    is called after each chunk. Returns the number of rows.
    """
    kind = _OUTPUT_KINDS.get(output.suffix.lower())
    if kind is None:
        raise DataFileError(
            f"{output}: unsupported output type {output.suffix or '(none)'!r}",
            hint="name the output .csv or .parquet",
        )
    if output.resolve() == source.resolve():
        raise DataFileError(
            f"{output}: the output would overwrite the input", hint="choose another path"
        )
    reader = TableReader(source, null_values=model.card.null_values)
    features = model.card.features
    added = prediction_columns(model)
    issues = reader.header_issues([f.name for f in features], allowed=None)
    issues += [
        Issue(name, "clashes with a prediction column; rename it")
        for name in added
        if name in reader.schema.names()
    ]
    if issues:
        raise DataSchemaError(str(source), issues)
    total = reader.count_rows()
    if total == 0:
        raise DataFileError(f"{source}: no data rows, only a header", hint="add rows to score")
    frame, checks = reader.typed(reader.scan().with_row_index(_ROW), features)
    done = 0
    lock = threading.Lock()

    def score(batch: pl.DataFrame) -> pl.DataFrame:
        nonlocal done
        checked = reader.raise_on_flags(batch, checks, row_index=_ROW).drop(_ROW)
        prediction = model.run(to_model_inputs(checked, features))
        with lock:
            done += batch.height
            if on_progress is not None:
                on_progress(done, total)
        return pl.concat([checked, _as_frame(model, prediction)], how="horizontal")

    schema = {**frame.drop(_ROW).select(reader.schema.names()).collect_schema()}
    schema |= {added[0]: pl.Float64() if model.card.task == "regression" else pl.String()}
    schema |= dict.fromkeys(added[1:], pl.Float64())
    scored = frame.select(*reader.schema.names(), _ROW, *flag_names(checks)).map_batches(
        score, schema=schema, streamable=True
    )
    with (
        pl.Config(streaming_chunk_size=chunk_size),
        atomic_path(output, suffix=output.suffix) as tmp,
    ):
        if kind == "csv":
            scored.sink_csv(tmp)
        else:
            # Snappy: pandas' and Spark's default codec, readable everywhere, and fast to write.
            scored.sink_parquet(tmp, compression="snappy")
    return done
