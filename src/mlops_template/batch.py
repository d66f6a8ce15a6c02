"""Batch prediction: score a CSV or Parquet file of any size in chunks, with bounded memory."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from . import frames
from ._fs import atomic_path
from .card import CARD_FILE, ModelCard
from .contract import Column
from .errors import DataFileError, DataSchemaError, Error, Issue, first_line
from .inference import Feed, OnnxModel, Prediction
from .tables import TableReader

__all__ = [
    "CHUNK_ROWS",
    "BatchPlan",
    "ChunkHandover",
    "plan_file",
    "predict_file",
    "prediction_columns",
    "read_features",
]

_OUTPUT_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# Rows per chunk. Per-chunk costs (Polars' plan, the sink's hand-over, the GIL) favour large
# chunks, onnxruntime scores in slices of `inference.SLICE` rows whatever the chunk, and peak
# memory grows with the chunk: this is the largest that keeps batch predict within the memory
# target `make bench` checks.
CHUNK_ROWS = 100_000


def prediction_columns(card: ModelCard) -> list[str]:
    """Names of the columns `predict_file` adds: the prediction, then one probability per class."""
    probabilities = [f"probability_{c}" for c in card.classes or ()]
    return [f"predicted_{card.target.name}", *probabilities]


def _label_type(card: ModelCard) -> pl.Enum:
    """Predicted labels as an Enum of the card's classes: typed, and cheaper to write."""
    return pl.Enum(card.classes or ())


def _as_frame(card: ModelCard, prediction: Prediction) -> pl.DataFrame:
    # Float32, as the model computes them: float64 would add digits that carry nothing, and
    # cost time and space to write.
    names = prediction_columns(card)
    if prediction.values is not None:
        return pl.DataFrame({names[0]: prediction.values}, schema={names[0]: pl.Float32})
    assert prediction.probabilities is not None
    assert prediction.classes is not None
    # The labels gathered in Polars from their class indices: no Python string per row.
    classes = pl.Series(names[0], card.classes or (), dtype=_label_type(card))
    columns: dict[str, object] = {names[0]: classes.gather(prediction.classes)}
    for i, name in enumerate(names[1:]):
        columns[name] = pl.Series(name, prediction.probabilities[:, i], dtype=pl.Float32)
    return pl.DataFrame(columns)


@dataclass(frozen=True)
class BatchPlan:
    """How to score one file, decided once from its header and the model card.

    It holds no model and no open file, so it travels to other processes (Dask's workers):
    each scores its rows with `prepare`, the model, and `finish`, exactly as the
    single-process path does.
    """

    reader: TableReader
    card: ModelCard
    names: list[str]  # the file's columns, in order
    passing: list[str]  # the columns that are not features: passed through as they are
    exprs: list[str | pl.Expr]
    schema: pl.Schema  # of the output: the file's columns, then the prediction columns
    total: int

    def scan(self) -> pl.LazyFrame:
        """The file, lazily; its columns typed the same way in every process."""
        return self.reader.scan(infer=self.passing)

    def prepare(
        self, model: OnnxModel, raw: pl.DataFrame, first_row: int
    ) -> tuple[pl.DataFrame, Feed]:
        """Typed columns of raw rows and the model's input, once the data contract passes."""
        # Lazily, so that a category's lookup is made once for its column and its codes.
        chunk = raw.lazy().select(self.exprs).collect()
        columns = self.reader.check(chunk, self.card.features, first_row=first_row)
        return frames.with_typed_dates(chunk, columns), model.feed(columns)

    def finish(self, chunk: pl.DataFrame, prediction: Prediction) -> pl.DataFrame:
        """The rows as they are written: the file's columns, then the prediction columns."""
        return chunk.select(self.names).hstack(_as_frame(self.card, prediction))


def data_hint(model_set: Path) -> str:
    """What to do about rows the model refuses: its card, not a schema file, is the rule."""
    card = model_set / CARD_FILE
    return f"fix the rows named above; the model's card ({card}) gives each column's rules"


def read_features(card: ModelCard, model_set: Path, source: Path) -> list[Column]:
    """Every row of `source`'s feature columns, checked against the card: the data contract's
    columns, read whole (for a profile of the file, not for scoring it)."""
    reader = TableReader(source, null_values=card.null_values, hint=data_hint(model_set))
    issues = reader.header_issues(card.features, allowed=None)
    if issues:
        raise DataSchemaError(str(source), issues, hint=reader.hint)
    try:
        arrays = reader.scan().select(reader.contract_exprs(card.features)).collect()
    except pl.exceptions.PolarsError as exc:
        raise DataFileError(f"{source}: cannot read: {first_line(exc)}") from None
    return reader.check(arrays, card.features)


def plan_file(model: OnnxModel, source: Path) -> BatchPlan:
    """Check `source`'s header against the card and decide how to read and score it."""
    hint = data_hint(model.path.parent)
    reader = TableReader(source, null_values=model.card.null_values, hint=hint)
    features = model.card.features
    added = prediction_columns(model.card)
    issues = reader.header_issues(features, allowed=None)
    issues += [
        Issue(name, "clashes with a prediction column; rename it")
        for name in added
        if name in reader.schema.names()
    ]
    if issues:
        raise DataSchemaError(str(source), issues, hint=reader.hint)
    total = reader.count_rows()
    if total == 0:
        raise DataFileError(f"{source}: no data rows, only a header", hint="add rows to score")
    names = list(reader.schema.names())
    feature_names = {f.name for f in features}
    passing = [n for n in names if n not in feature_names]
    try:
        types = reader.scan(infer=passing).collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise DataFileError(f"{source}: cannot read: {first_line(exc)}") from None
    # The scan only reads; each chunk's contract arrays and typed feature columns are computed
    # eagerly (a plan that computes them too holds more memory as files grow).
    exprs: list[str | pl.Expr] = [
        *passing,
        *(frames.typed_expr(f, enum=True) for f in features),
        *reader.contract_exprs(features),
    ]
    spec_of = {f.name: f for f in features}
    schema: dict[str, Any] = {
        n: frames.typed_dtype(spec_of[n], enum=True) if n in spec_of else types[n] for n in names
    }
    schema[added[0]] = pl.Float32 if model.card.task == "regression" else _label_type(model.card)
    schema |= dict.fromkeys(added[1:], pl.Float32)
    return BatchPlan(reader, model.card, names, passing, exprs, pl.Schema(schema), total)


def read_error(source: Path, error: BaseException) -> DataFileError:
    """A read that failed far into a file, as the user can act on it."""
    return DataFileError(
        f"{source}: cannot read: {first_line(error)}",
        hint="a column other than the features changed type far into the file: "
        "make its values consistent, or convert the file to Parquet",
    )


def predict_file(
    model: OnnxModel,
    source: Path,
    output: Path,
    *,
    chunk_size: int = CHUNK_ROWS,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Score every row of `source` and write it, plus prediction columns, to `output`.

    The file is read, checked by the data contract, scored and written one chunk of about
    `chunk_size` rows at a time, so memory stays bounded whatever the file's size. Feature
    columns come out typed as the card says (a category, and the predicted class, as an Enum
    of its labels), other columns as they were (a CSV's by the types Polars infers from the
    whole file). `output` (CSV or Parquet, by its suffix) appears only
    once every row is scored. `on_progress(done, total)` is called after each chunk. Returns
    the number of rows.
    """
    kind = _OUTPUT_KINDS.get(output.suffix.lower())
    if kind is None:
        raise DataFileError(
            f"{output}: unsupported output type {output.suffix or '(none)'!r}",
            hint="name the output .csv or .parquet",
        )
    check_output(source, output)
    plan = plan_file(model, source)
    lazy, total = plan.scan(), plan.total
    done = 0
    # Three stages in step, each in its own thread and mostly outside the GIL (Polars and
    # onnxruntime release it): while one chunk is written, the next is scored and the one after
    # is checked and encoded, so neither the model nor the writer waits for the other. The
    # pools and the chunks belong to this call, not to the threads Polars pulls them from:
    # they are closed and shut down here, in this thread, however the sink ends.
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="check") as checker,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") as scorer,
    ):

        def chunks() -> Generator[pl.DataFrame]:
            read = 0
            checked: deque[Future[tuple[pl.DataFrame, Feed]]] = deque()
            scored: deque[tuple[pl.DataFrame, Future[Prediction]]] = deque()

            def advance() -> None:
                chunk, feed = checked.popleft().result()  # a fault raises here, in order
                scored.append((chunk, scorer.submit(model.run, feed, labels=False)))

            for raw in lazy.collect_batches(chunk_size=chunk_size, lazy=True):
                checked.append(checker.submit(plan.prepare, model, raw, read))
                read += raw.height
                if len(checked) > 1:
                    advance()
                if len(scored) > 1:
                    yield finish(*scored.popleft())
            while checked:
                advance()
            while scored:
                yield finish(*scored.popleft())

        def finish(chunk: pl.DataFrame, scored: Future[Prediction]) -> pl.DataFrame:
            nonlocal done
            out = plan.finish(chunk, scored.result())
            done += chunk.height
            if on_progress is not None:
                on_progress(done, total)
            return out

        handover = ChunkHandover(chunks())
        try:
            scored = register_io_source(lambda *_: handover, schema=plan.schema)
            with atomic_path(output, suffix=output.suffix) as tmp:
                if kind == "csv":
                    scored.sink_csv(tmp)
                else:
                    # Snappy: pandas' and Spark's default codec, readable everywhere, fast.
                    scored.sink_parquet(tmp, compression="snappy")
        except Exception as exc:
            error = handover.failure or exc
            if isinstance(error, Error):
                raise error from None
            if isinstance(error, OSError):
                raise DataFileError(f"{output}: cannot write: {error.strerror or error}") from None
            raise read_error(source, error) from None
        finally:  # before anything leaves this call, the error included
            handover.close()
    return done


class ChunkHandover:
    """The scored chunks as a sink pulls them: Polars calls `__next__` from threads of its own.

    When the sink fails (a full disk, say), Polars drops the query but not a `__next__` call it
    has already handed to one of its blocking threads: that thread goes on to take the GIL,
    and should the interpreter be exiting by then, Python ends the thread inside Rust frames
    and the whole process aborts ("FATAL: exception not rethrown"). So `close` runs in the
    caller's thread before it returns: it waits for a call under way, gives one already handed
    over a moment to arrive (answered at once, with the end), then closes the chunks there,
    which stops the reader feeding them.
    """

    _GRACE = 0.1  # seconds for a call Polars has handed to a thread to reach Python

    def __init__(self, chunks: Generator[pl.DataFrame]) -> None:
        self._chunks = chunks
        self._state = threading.Condition()
        self._busy = self._closed = self._late = self._ended = False
        self.failure: BaseException | None = None  # what the chunks raised, as it was

    def __iter__(self) -> ChunkHandover:
        return self

    def __next__(self) -> pl.DataFrame:
        with self._state:
            if self._closed:
                self._late = True
                self._state.notify_all()
                raise StopIteration
            self._busy = True
        try:
            return next(self._chunks)
        except StopIteration:
            self._ended = True
            raise
        except BaseException as exc:  # handed to the caller as it is, not as Polars' error
            self.failure = exc
            raise
        finally:
            with self._state:
                self._busy = False
                self._state.notify_all()

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.wait_for(lambda: not self._busy)
            if not self._ended and self.failure is None:  # the sink stopped early: Polars may
                # still have a call on its way (after the end, or an error, it makes none)
                self._state.wait_for(lambda: self._late, timeout=self._GRACE)
        self._chunks.close()


def check_output(source: Path, output: Path) -> None:
    if output.resolve() == source.resolve():
        raise DataFileError(
            f"{output}: the output would overwrite the input", hint="choose another path"
        )
