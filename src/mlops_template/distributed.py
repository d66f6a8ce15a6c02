"""Batch prediction on Dask: a file's rows in partitions, scored by many processes or machines.

The driver checks the file's header and the model once (`batch.plan_file`), then hands Dask one
task per partition of rows. Each task reads only its rows, checks them with the same data
contract, scores them with its process's onnxruntime session (loaded once per process from the
model version the driver resolved, and hash-checked against the card as always) and writes one
Parquet file. The files are written into a hidden folder beside the output, which is renamed
into place only when every partition is there: the output is the whole dataset or nothing.

```
predictions.parquet/            a Parquet dataset: read it with pl.read_parquet(folder) or Spark
  part-00000.parquet            rows 0 .. partition_rows - 1, in the input's order
  part-00001.parquet            ...
```

Schedulers: `synchronous` (one process, for tests and debugging), `processes` (a local pool) or
the address of a running Dask scheduler (`tcp://HOST:8786`), whose workers must see the input,
the model folder and the output's folder at the same paths (a shared volume).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from ._fs import current_version
from .batch import CHUNK_ROWS, BatchPlan, check_output, plan_file, read_error
from .errors import DataFileError, Error, MissingExtraError, UserError
from .inference import OnnxModel

__all__ = ["LOCAL_SCHEDULERS", "local_cluster", "predict_distributed"]

LOCAL_SCHEDULERS = ("synchronous", "processes")
_PART = "part-{:05d}.parquet"
_models: dict[str, OnnxModel] = {}
_models_lock = threading.Lock()


def _model(version: str) -> OnnxModel:
    """The process's session for one model version: loaded and hash-checked once."""
    with _models_lock:
        model = _models.get(version)
        if model is None:
            model = _models[version] = OnnxModel.load(Path(version))
        return model


def score_partition(
    version: str, plan: BatchPlan, folder: str, index: int, offset: int, rows: int, chunk: int
) -> int:
    """Score rows `offset` .. `offset + rows - 1` and write them as partition `index`.

    The file appears under its final name in one rename, so a task retried after its worker
    died (Dask does that) never leaves half a file behind.
    """
    model = _model(version)
    try:
        raw = plan.scan().slice(offset, rows).collect()
    except pl.exceptions.PolarsError as exc:
        raise read_error(plan.reader.path, exc) from None
    scored = []
    for start in range(0, raw.height, chunk):
        frame, feed = plan.prepare(model, raw.slice(start, chunk), offset + start)
        scored.append(plan.finish(frame, model.run(feed, labels=False)))
    target = Path(folder) / _PART.format(index)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        pl.concat(scored).write_parquet(tmp, compression="snappy")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return raw.height


def predict_distributed(
    model_dir: Path,
    source: Path,
    output: Path,
    *,
    scheduler: str,
    partition_rows: int = 2 * CHUNK_ROWS,
    chunk_size: int = CHUNK_ROWS,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Score `source` on Dask and write a Parquet dataset (a folder) at `output`.

    The rows, their order and every value are those `batch.predict_file` writes with the same
    `chunk_size`: a partition is made of whole chunks (`partition_rows` is rounded up to a
    multiple of `chunk_size`), so each row is scored in the very batch it is scored in there
    (onnxruntime's kernels round the last bit of a float differently for other batch sizes).
    Returns the number of rows.
    """
    try:
        from dask.delayed import delayed
    except ImportError as exc:
        raise MissingExtraError("scoring on Dask", "dask", exc.name) from None
    if scheduler not in LOCAL_SCHEDULERS and not scheduler.startswith(("tcp://", "tls://")):
        raise UserError(
            f"--scheduler: {scheduler!r} is not a scheduler",
            hint="use synchronous, processes, or a Dask scheduler's address (tcp://HOST:8786)",
        )
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise DataFileError(
            f"{output}: a distributed run writes a Parquet dataset (a folder of files)",
            hint="name the output .parquet",
        )
    check_output(source, output)
    version = current_version(model_dir).resolve()  # every worker scores with this very model
    plan = plan_file(OnnxModel.load(version), source)
    partition_rows = -(-partition_rows // chunk_size) * chunk_size  # whole chunks
    starts = range(0, plan.total, partition_rows)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.{uuid.uuid4().hex}.tmp")  # hidden until whole
    staging.mkdir()
    try:
        tasks = [
            delayed(score_partition, pure=False)(
                str(version),
                plan,
                str(staging),
                index,
                start,
                min(partition_rows, plan.total - start),
                chunk_size,
            )
            for index, start in enumerate(starts)
        ]
        counts = _compute(tasks, scheduler, plan.total, on_progress)
        done = sum(counts)
        parts = sorted(path.name for path in staging.iterdir())
        expected = [_PART.format(index) for index in range(len(starts))]
        if done != plan.total or [p for p in parts if not p.startswith(".")] != expected:
            raise DataFileError(  # never expected: a worker wrote elsewhere, or lost a file
                f"{output}: the partitions written do not add up ({done} of {plan.total} rows)",
                hint="check that every worker sees the output's folder at the same path",
            )
        for leftover in (p for p in parts if p.startswith(".")):
            (staging / leftover).unlink()
        _replace_folder(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


def _compute(
    tasks: list[Any], scheduler: str, total: int, on_progress: Callable[[int, int], None] | None
) -> list[int]:
    """Run the tasks on the scheduler asked for; an error of ours comes back as it was."""
    from dask.base import compute

    done = 0

    def tick(rows: int) -> None:
        nonlocal done
        done += rows
        if on_progress is not None:
            on_progress(done, total)

    try:
        if scheduler in LOCAL_SCHEDULERS:
            from dask.callbacks import Callback

            def posttask(key: Any, result: Any, *_: Any) -> None:
                if isinstance(result, int) and "score_partition" in str(key):
                    tick(result)

            with Callback(posttask=posttask):
                return list(compute(*tasks, scheduler=scheduler))
        with _client(scheduler) as client:
            from distributed import as_completed

            futures = client.compute(tasks)
            try:
                for future in as_completed(futures):
                    tick(future.result())
            except BaseException:
                client.cancel(futures)  # no task writes on once the run has failed
                raise
            return [future.result() for future in futures]
    except Error:
        raise
    except OSError as exc:
        raise DataFileError(f"cannot write a partition: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _client(address: str) -> Iterator[Any]:
    try:
        from distributed import Client
    except ImportError as exc:
        raise MissingExtraError("scoring on a Dask cluster", "dask", exc.name) from None
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise UserError(
            f"--scheduler: cannot reach the Dask scheduler at {address}: {exc}",
            hint="start one (`dask scheduler`) or check the address",
        ) from None
    with client:
        yield client


def local_cluster(workers: int = 2) -> Any:
    """A Dask `LocalCluster` on this machine's loopback only: `workers` processes of one thread
    each (onnxruntime and Polars each use one core per worker), dashboard on a free port. Use it
    as a context manager; pass its `scheduler_address` as `--scheduler`."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=40,  # errors only: the driver reports what went wrong
    )


def _replace_folder(staging: Path, output: Path) -> None:
    """Put the finished folder in place of `output` (a folder or file of an earlier run).

    A reader sees the earlier output, then for an instant none, then the new one: never part
    of either.
    """
    old = None
    if output.exists() or output.is_symlink():
        old = output.with_name(f".{output.name}.{uuid.uuid4().hex}.old")
        output.replace(old)
    staging.replace(output)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
