"""Batch prediction on Dask: the same rows as the single-process path, the whole dataset or none.

The synchronous scheduler runs in the fast suite; a local process pool and a real `LocalCluster`
on 127.0.0.1 (two worker processes, one of them killed mid-job) run end to end.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mlops_template.batch import predict_file
from mlops_template.cli import app
from mlops_template.distributed import local_cluster, predict_distributed
from mlops_template.errors import (
    DataFileError,
    DataSchemaError,
    InputValidationError,
    Issue,
    UserError,
)
from mlops_template.inference import OnnxModel

from .conftest import PENGUINS

pytest.importorskip("distributed", reason="the `dask` extra is not installed")


def single(trained_dir: Path, source: Path, tmp_path: Path, chunk: int = 50_000) -> pl.DataFrame:
    """What the single-process path writes (scored in the same batches: see predict_distributed)."""
    output = tmp_path / "single.parquet"
    predict_file(OnnxModel.load(trained_dir), source, output, chunk_size=chunk)
    return pl.read_parquet(output)


def parts(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def hidden(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_synchronous_run_writes_the_single_process_rows_in_partitions(
    trained_dir: Path, tmp_path: Path, suffix: str
) -> None:
    source = tmp_path / f"penguins{suffix}"
    frame = pl.read_csv(PENGUINS, null_values=["NA"])
    frame.write_csv(source) if suffix == ".csv" else frame.write_parquet(source)
    output = tmp_path / "scored.parquet"
    progress: list[tuple[int, int]] = []
    rows = predict_distributed(
        trained_dir,
        source,
        output,
        scheduler="synchronous",
        partition_rows=100,  # rounded up to 120: four chunks of 30
        chunk_size=30,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert rows == frame.height
    assert parts(output) == [f"part-0000{i}.parquet" for i in range(3)]
    assert pl.read_parquet(output).equals(single(trained_dir, source, tmp_path, chunk=30))
    assert progress[-1] == (frame.height, frame.height)
    assert hidden(tmp_path) == []


def test_a_bad_row_in_a_late_partition_is_named_and_nothing_is_published(
    trained_dir: Path, tmp_path: Path
) -> None:
    lines = PENGUINS.read_text().splitlines(keepends=True)
    lines[300] = lines[300].replace("Biscoe", "Atlantis", 1).replace("Dream", "Atlantis", 1)
    lines[300] = lines[300].replace("Torgersen", "Atlantis", 1)
    source = tmp_path / "bad.csv"
    source.write_text("".join(lines))
    output = tmp_path / "scored.parquet"
    output.mkdir()
    (output / "part-00000.parquet").write_bytes(b"an earlier run's result")
    with pytest.raises(DataSchemaError, match="Atlantis") as caught:
        predict_distributed(trained_dir, source, output, scheduler="synchronous", partition_rows=50)
    assert "(line 301)" in str(caught.value)
    assert (output / "part-00000.parquet").read_bytes() == b"an earlier run's result"
    assert hidden(tmp_path) == []


def test_a_new_run_replaces_an_earlier_dataset_whole(trained_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.parquet"
    predict_distributed(
        trained_dir, PENGUINS, output, scheduler="synchronous", partition_rows=10, chunk_size=10
    )
    assert len(parts(output)) == 35
    predict_distributed(trained_dir, PENGUINS, output, scheduler="synchronous", partition_rows=200)
    assert parts(output) == ["part-00000.parquet"]  # 200 rows, rounded up to one chunk
    assert pl.read_parquet(output).height == 344
    assert hidden(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "scheduler", "message"),
    [
        ("scored.csv", "synchronous", "writes a Parquet dataset"),
        ("scored.parquet", "threads", "is not a scheduler"),
        ("scored.parquet", "localhost:8786", "is not a scheduler"),
    ],
)
def test_what_a_distributed_run_cannot_do_is_refused_before_any_work(
    trained_dir: Path, tmp_path: Path, name: str, scheduler: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        predict_distributed(trained_dir, PENGUINS, tmp_path / name, scheduler=scheduler)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_errors_travel_between_processes_whole() -> None:
    issues = [Issue("island", "not one of the categories", rows=(3, 9), count=4)]
    for error in (
        DataSchemaError("data.csv", issues),
        InputValidationError("body", issues, hint="send the features"),
        DataFileError("data.csv: cannot read", hint="check it"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.hint == error.hint
        assert getattr(copy, "issues", None) == getattr(error, "issues", None)


def test_cli_scores_on_a_scheduler(trained_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.parquet"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(PENGUINS),
            "--output",
            str(output),
            "--scheduler",
            "synchronous",
            "--partition-rows",
            "100",
            "--chunk-size",
            "50",
            "--model-dir",
            str(trained_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "scored 344 rows" in result.output
    assert len(parts(output)) == 4
    assert pl.read_parquet(output).equals(single(trained_dir, PENGUINS, tmp_path, chunk=50))


@pytest.mark.e2e
def test_a_local_process_pool_writes_the_same_rows(trained_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "scored.parquet"
    predict_distributed(
        trained_dir, PENGUINS, output, scheduler="processes", partition_rows=100, chunk_size=25
    )
    assert len(parts(output)) == 4
    assert pl.read_parquet(output).equals(single(trained_dir, PENGUINS, tmp_path, chunk=25))


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    with local_cluster(workers=2) as local:
        yield local


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_local_cluster_survives_a_killed_worker_and_writes_the_same_rows(
    cluster: object, trained_dir: Path, tmp_path: Path
) -> None:
    from distributed import Client

    source = tmp_path / "many.parquet"
    pl.concat([pl.read_csv(PENGUINS, null_values=["NA"])] * 300).write_parquet(
        source, row_group_size=5_000
    )
    output = tmp_path / "scored.parquet"
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    outcome: list[BaseException | int] = []

    def run() -> None:
        try:
            outcome.append(
                predict_distributed(
                    trained_dir,
                    source,
                    output,
                    scheduler=address,
                    partition_rows=2_000,
                    chunk_size=1_000,
                )
            )
        except BaseException as exc:  # handed to the test below
            outcome.append(exc)

    job = threading.Thread(target=run)
    job.start()
    deadline = time.monotonic() + 120
    staging: list[Path] = []
    while not staging and time.monotonic() < deadline:  # the first partition is written
        staging = [p for p in tmp_path.glob(".scored.parquet.*.tmp") if any(p.glob("part-*"))]
        time.sleep(0.02)
    assert staging, "no partition was written"
    with Client(address) as client:
        pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    assert not output.exists()  # mid-job: nothing a user would take for a result
    job.join(timeout=240)
    assert outcome, "the job did not finish"
    assert outcome == [300 * 344], outcome
    assert pl.read_parquet(output).equals(single(trained_dir, source, tmp_path, chunk=1_000))
    assert hidden(tmp_path) == []
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
        assert victim not in client.run(os.getpid).values()


def test_the_batch_image_needs_neither_the_serving_nor_the_training_libraries(
    trained_dir: Path, tmp_path: Path
) -> None:
    """The batch image installs the package with the `dask` extra only (`EXTRA=dask`)."""
    import subprocess
    import sys

    blocked = ("fastapi", "starlette", "uvicorn", "sklearn", "skl2onnx", "matplotlib", "onnx")
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None  # import fails, as if not installed\n"
        "from mlops_template.cli import main\n"
        "sys.argv[0] = 'mlops-template'\n"
        "main()\n"
    )
    output = tmp_path / "scored.parquet"
    command = [sys.executable, "-c", code, "predict", str(PENGUINS), "-o", str(output)]
    done = subprocess.run(
        [*command, "--scheduler", "synchronous", "--model-dir", str(trained_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert pl.read_parquet(output).height == 344


def test_the_clis_dask_defaults_are_the_distributed_modules() -> None:
    """The CLI spells its defaults out (`--help` imports neither Polars nor Dask)."""
    import inspect

    from mlops_template import batch, cli, distributed

    options = inspect.signature(cli.predict).parameters
    scored = inspect.signature(distributed.predict_distributed).parameters
    assert scored["chunk_size"].default == batch.CHUNK_ROWS
    assert options["partition_rows"].default == scored["partition_rows"].default
