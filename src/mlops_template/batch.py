"""Batch prediction: score a CSV or Parquet file of any size in chunks, with bounded memory."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

from ._fs import atomic_path
from .data import TableReader, to_model_inputs
from .errors import DataFileError, DataSchemaError, Issue
from .inference import OnnxModel, Prediction

__all__ = ["predict_file", "prediction_columns"]

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
    columns: dict[str, object] = {names[0]: prediction.labels}
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

    The file streams through in chunks of `chunk_size` rows, so memory stays bounded whatever
    its size; `output` (CSV or Parquet, by its suffix) appears only once every row is scored.
    `on_progress(done, total)` is called after each chunk. Returns the number of rows.
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
    reader = TableReader(source)
    features = model.card.features
    issues = reader.header_issues([f.name for f in features], allowed=None)
    added = prediction_columns(model)
    issues += [
        Issue(name, "clashes with a prediction column; rename it")
        for name in added
        if name in reader.schema.names()
    ]
    if issues:
        raise DataSchemaError(str(source), issues)
    frame, checks = reader.typed(reader.scan(), features)
    total = reader.count_rows()
    done = 0
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(output, suffix=output.suffix))
        parts_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=output.parent)))
        csv_out = stack.enter_context(tmp.open("wb")) if kind == "csv" else None
        for batch in frame.collect_batches(chunk_size=chunk_size):
            checked = reader.raise_on_flags(batch, checks, row_offset=done)
            prediction = model.run(to_model_inputs(checked, features))
            scored = pl.concat([checked, _as_frame(model, prediction)], how="horizontal")
            if csv_out is not None:
                scored.write_csv(csv_out, include_header=done == 0)
            else:
                scored.write_parquet(parts_dir / f"part-{done:012d}.parquet")
            done += batch.height
            if on_progress is not None:
                on_progress(done, total)
        if done == 0:
            raise DataFileError(f"{source}: no data rows, only a header", hint="add rows to score")
        if csv_out is None:
            pl.scan_parquet(sorted(parts_dir.iterdir())).sink_parquet(tmp)
    return done
