from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.batch import (
    ChunkHandover,
    plan_file,
    predict_file,
    prediction_columns,
)
from mlops_template.data import TEST_FILE, to_model_inputs
from mlops_template.errors import DataFileError, DataSchemaError
from mlops_template.inference import OnnxModel

from .conftest import PENGUINS


@pytest.fixture(scope="module")
def model(trained_dir: Path) -> OnnxModel:
    return OnnxModel.load(trained_dir)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("chunk_size", [7, 100_000])
def test_predict_file_adds_predictions_to_every_row(
    model: OnnxModel, prepared_dir: Path, tmp_path: Path, suffix: str, chunk_size: int
) -> None:
    source = current_version(prepared_dir) / TEST_FILE
    output = tmp_path / f"scored{suffix}"
    progress: list[tuple[int, int]] = []
    rows = predict_file(
        model,
        source,
        output,
        chunk_size=chunk_size,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    test = pl.read_parquet(source)
    scored = pl.read_parquet(output) if suffix == ".parquet" else pl.read_csv(output)
    assert rows == scored.height == test.height
    assert scored.columns == [*test.columns, *prediction_columns(model.card)]
    assert scored.columns[-4:] == [
        "predicted_species",
        "probability_Adelie",
        "probability_Chinstrap",
        "probability_Gentoo",
    ]
    expected = model.run(to_model_inputs(test, model.card.features, model.card.inputs))
    assert scored.get_column("predicted_species").to_list() == expected.labels.tolist()
    probabilities = scored.select(prediction_columns(model.card)[1:])
    if suffix == ".parquet":  # the model's own float32 values, exactly
        assert set(probabilities.dtypes) == {pl.Float32}
        # Categories and the predicted class keep their labels as types: Enums, in card order.
        assert scored.schema["predicted_species"] == pl.Enum(model.card.classes or ())
        for spec in model.card.features:
            if spec.type == "category":
                assert scored.schema[spec.name] == pl.Enum(spec.categories or ())
                assert (
                    scored.get_column(spec.name)
                    .cast(pl.String)
                    .equals(test.get_column(spec.name), check_names=True)
                )
        np.testing.assert_array_equal(probabilities.to_numpy(), expected.probabilities)
    else:  # CSV: float32's shortest text, which reads back to the same float32
        values = probabilities.to_numpy().astype(np.float32)
        np.testing.assert_array_equal(values, expected.probabilities)
    assert progress[-1] == (test.height, test.height)
    done = [d for d, _ in progress]
    assert done == sorted(done)
    if chunk_size < test.height:
        assert len(progress) >= test.height // (2 * chunk_size)
    assert [p.name for p in tmp_path.iterdir()] == [output.name]


def test_the_benchmarks_io_yardstick_reads_scores_and_writes_what_predict_does(
    model: OnnxModel, prepared_dir: Path, tmp_path: Path
) -> None:
    """`make bench` sets predict beside the least any batch predict must do (read, score,
    write): that yardstick must write every row as read (categories as the Enum predict
    writes), plus the model's own scores (here, on a file of one chunk, the very rows), or
    its figure means nothing."""
    from benchmarks.pipeline import io_alone

    source = current_version(prepared_dir) / TEST_FILE
    io_alone(model, plan_file(model, source), tmp_path / "alone.parquet")
    predict_file(model, source, tmp_path / "scored.parquet")
    alone = pl.read_parquet(tmp_path / "alone.parquet")
    scored = pl.read_parquet(tmp_path / "scored.parquet")
    raw = pl.read_parquet(source)
    probabilities = prediction_columns(model.card)[1:]
    assert alone.columns == [*raw.columns, *probabilities]
    assert alone.select(raw.columns).equals(scored.select(raw.columns))
    np.testing.assert_array_equal(
        alone.select(probabilities).to_numpy(), scored.select(probabilities).to_numpy()
    )


def test_predict_scores_the_raw_csv_with_extra_columns_kept(
    model: OnnxModel, tmp_path: Path
) -> None:
    output = tmp_path / "out.parquet"
    predict_file(model, PENGUINS, output, chunk_size=50)
    scored = pl.read_parquet(output)
    assert scored.height == 344
    assert {"species", "year", "predicted_species"} <= set(scored.columns)
    agreement = (scored.get_column("species") == scored.get_column("predicted_species")).mean()
    assert agreement is not None
    assert agreement > 0.95


def test_a_bad_row_stops_prediction_and_keeps_the_previous_output(
    model: OnnxModel, tmp_path: Path
) -> None:
    lines = PENGUINS.read_text().splitlines()
    lines[300] = lines[300].replace("Biscoe", "Atlantis").replace("Dream", "Atlantis")
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out.csv"
    output.write_text("previous\n")
    with pytest.raises(
        DataSchemaError, match=r"column 'island': unknown category.*'Atlantis' \(line 301\)"
    ):
        predict_file(model, source, output, chunk_size=64)
    assert output.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


@pytest.mark.parametrize(
    ("output_name", "fragment"),
    [("out.json", "unsupported output type '.json'"), ("in.csv", "would overwrite the input")],
)
def test_bad_output_paths_are_refused(
    model: OnnxModel, tmp_path: Path, output_name: str, fragment: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(PENGUINS.read_bytes())
    with pytest.raises(DataFileError, match=fragment):
        predict_file(model, source, tmp_path / output_name)
    assert (
        hashlib.sha256(source.read_bytes()).digest()
        == hashlib.sha256(PENGUINS.read_bytes()).digest()
    )


def test_missing_feature_column_is_named(model: OnnxModel, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pl.read_csv(PENGUINS, null_values=["NA"]).drop("sex").write_parquet(source)
    with pytest.raises(DataSchemaError, match="column 'sex': missing from the file"):
        predict_file(model, source, tmp_path / "out.parquet")


def test_header_only_file_is_refused(model: OnnxModel, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(PENGUINS.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFileError, match="no data rows"):
        predict_file(model, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_a_passing_column_that_changes_type_late_is_named(model: OnnxModel, tmp_path: Path) -> None:
    """Other columns' types are inferred from the first rows; a row far below that breaks the
    inferred type stops the run with the column named, and writes nothing."""
    frame = pl.read_csv(PENGUINS, null_values=["NA"]).drop("species")
    rows = pl.concat([frame] * 40)  # 13,760 rows: more than the 10,000 types are read from
    source = tmp_path / "late.csv"
    text = rows.write_csv(null_value="NA")
    lines = text.splitlines()
    lines[-1] = lines[-1].rsplit(",", 1)[0] + ",soon"  # `year`, a number until now
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match="year") as caught:
        predict_file(model, source, tmp_path / "out.parquet")
    assert str(source) in str(caught.value)
    assert not (tmp_path / "out.parquet").exists()


def _file_size_limit(limit: int) -> None:  # runs in the child, before it starts
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_disk_that_fills_mid_write_is_one_error_and_keeps_the_previous_output(
    trained_dir: Path, tmp_path: Path
) -> None:
    """A write fails far into the file: one error line naming the output, and the previous
    output untouched. The disk is a file-size limit, which fails a write as a full disk does."""
    source = tmp_path / "in.parquet"
    pl.concat([pl.read_csv(PENGUINS, null_values=["NA"])] * 3000).write_parquet(source)
    output = tmp_path / "out.csv"  # ~1 M rows of CSV: far over the limit
    output.write_text("previous\n")
    command = [sys.executable, "-m", "mlops_template", "predict", str(source)]
    result = subprocess.run(
        [*command, "-o", str(output), "--model-dir", str(trained_dir)],
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=lambda: _file_size_limit(2 * 2**20),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert lines[0].startswith(f"error: {output}: cannot write: File too large"), result.stderr
    assert lines[-1].startswith("hint: ")
    assert len(lines) == 2, result.stderr  # nothing after: no traceback, no thread's complaint
    assert output.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.csv"]


# The sink itself fails (here: a schema Polars refuses) while the chunk generator is suspended
# or running in a Polars thread. Its worker threads must still wind down in the caller: left to
# the garbage collector, the generator was finalised in one of its own threads ("cannot join
# current thread"), or aborted the interpreter at exit ("FATAL: exception not rethrown").
SINK_FAILS = """
import dataclasses, sys
from pathlib import Path
import polars as pl
import mlops_template.batch as batch
from mlops_template.inference import OnnxModel

plan_file = batch.plan_file

def wrong_schema(model, source):
    plan = plan_file(model, source)
    return dataclasses.replace(plan, schema=pl.Schema({**plan.schema, "island": pl.Int8}))

batch.plan_file = wrong_schema
model = OnnxModel.load(Path(sys.argv[1]))
for _ in range(3):
    try:
        batch.predict_file(model, Path(sys.argv[2]), Path(sys.argv[3]), chunk_size=20)
    except batch.DataFileError as exc:
        print(exc)
"""


def test_a_sink_that_fails_winds_down_its_threads_cleanly(
    trained_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.parquet"
    result = subprocess.run(
        [sys.executable, "-c", SINK_FAILS, str(trained_dir), str(PENGUINS), str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    errors = result.stdout.strip().splitlines()
    assert len(errors) == 3
    assert all("cannot read: data type mismatch for column island" in e for e in errors), errors
    assert not output.exists()


def test_a_failed_sink_waits_for_the_pull_under_way_and_ends_the_chunks_in_the_caller() -> None:
    """After a sink fails, Polars may still be inside `__next__` in a thread of its own; were
    the caller to return (and the interpreter to exit) meanwhile, the process would abort."""
    inside, release, ended_in = threading.Event(), threading.Event(), []

    def chunks() -> Generator[pl.DataFrame]:
        try:
            yield pl.DataFrame({"row": [1]})
            inside.set()
            release.wait(10)
            yield pl.DataFrame({"row": [2]})
        finally:
            ended_in.append(threading.current_thread().name)

    handover = ChunkHandover(chunks())
    assert next(handover)["row"].to_list() == [1]
    with ThreadPoolExecutor(1, thread_name_prefix="polars") as polars_thread:
        pull = polars_thread.submit(next, handover)
        assert inside.wait(10)
        caller = threading.Thread(target=handover.close, name="caller")
        caller.start()
        caller.join(0.3)
        assert caller.is_alive()  # the pull under way holds `close` back
        release.set()
        caller.join(10)
        assert not caller.is_alive()
        assert pull.result()["row"].to_list() == [2]
    with pytest.raises(StopIteration):  # a call Polars handed over late gets the end at once
        next(handover)
    assert ended_in == ["caller"]  # the chunks (and the reader behind them) closed by the caller
