from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.batch import predict_file, prediction_columns
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
