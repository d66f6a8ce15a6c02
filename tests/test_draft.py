"""`schema FILE --target NAME`: a first dataset.toml that loads, prepares and trains unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mlops_template.data import prepare_dataset
from mlops_template.draft import draft_schema
from mlops_template.errors import UserError
from mlops_template.schema import DatasetSchema, load_schema
from mlops_template.train import train_model

from .conftest import ROOT

SCHEMA = load_schema(ROOT / "dataset.toml")


def prepares_and_trains(schema: DatasetSchema, root: Path) -> None:
    prepare_dataset(schema, root / "processed")
    train_model(schema, root / "processed", root / "models")
    assert (root / "models" / "current" / "model.onnx").is_file()


def test_the_projects_own_data_drafts_a_schema_that_trains(tmp_path: Path) -> None:
    text = draft_schema(SCHEMA.source, SCHEMA.target.name, relative_to=tmp_path)
    drafted = load_schema_text(text, tmp_path)
    assert drafted.target.type == SCHEMA.target.type or SCHEMA.target.is_numeric
    assert {f.name for f in drafted.features} | set(drafted.ignore) == {
        *(f.name for f in SCHEMA.features),
        *SCHEMA.ignore,
    }
    prepares_and_trains(drafted, tmp_path)


def load_schema_text(text: str, root: Path) -> DatasetSchema:
    (root / "dataset.toml").write_text(text)
    return load_schema(root / "dataset.toml")


def test_identifiers_constants_empty_columns_and_foreign_dates_are_proposed_under_ignore(
    tmp_path: Path,
) -> None:
    rows = 60
    frame = pl.DataFrame(
        {
            "id": [f"r-{i:04d}" for i in range(rows)],
            "plant": ["north"] * rows,
            "note": [None] * rows,
            "measured on": [f"2024-01-{1 + i % 28:02d}" for i in range(rows)],
            "logged": [f"2024/01/{1 + i % 28:02d} 10:00" for i in range(rows)],
            "température (°C)": [10.0 + (i % 17) * 0.5 for i in range(rows)],
            "shift": [1 + i % 3 for i in range(rows)],
            "ok": [i % 4 != 0 for i in range(rows)],
            "comment": [f"reading {i} of sensor {i % 7} looks fine" for i in range(rows)],
            "grade": [i % 3 for i in range(rows)],
        }
    )
    source = tmp_path / "readings.csv"
    frame.write_csv(source)
    text = draft_schema(source, "grade", relative_to=tmp_path)
    schema = load_schema_text(text, tmp_path)
    assert set(schema.ignore) == {"id", "plant", "note", "logged"}
    for name, why in {
        "id": "identifier",
        "plant": "constant",
        "note": "always missing",
        "logged": "not ISO 8601",
    }.items():
        assert f'# ignored: "{name}": ' in text
        assert why in text.split(f'# ignored: "{name}": ')[1].splitlines()[0]
    types = {f.name: f.type for f in schema.features}
    assert types == {
        "température (°C)": "float",
        "shift": "integer",
        "ok": "category",
        "comment": "text",
        "measured on": "date",
    }
    assert '# 3 distinct numbers: codes? then type = "category"' in text  # the shift
    assert schema.target.type == "category"
    assert schema.target.categories == ("0", "1", "2")
    prepares_and_trains(schema, tmp_path)


def test_missing_values_make_a_feature_nullable_and_bounds_are_observed(
    tmp_path: Path,
) -> None:
    source = tmp_path / "t.parquet"
    values = [1.5, None, 3.25, 7.0] * 10
    pl.DataFrame({"x": values, "y": [float(i) for i in range(40)]}).write_parquet(source)
    schema = load_schema_text(draft_schema(source, "y", relative_to=tmp_path), tmp_path)
    (x,) = schema.features
    assert (x.nullable, x.min, x.max) == (True, 1.5, 7.0)
    assert schema.target.type == "float"  # a number with many values: a regressor


def test_an_unknown_target_is_one_error_naming_the_columns(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--target 'nope': no such column") as caught:
        draft_schema(SCHEMA.source, "nope", relative_to=tmp_path)
    assert SCHEMA.target.name in (caught.value.hint or "")
    cli = [sys.executable, "-m", "mlops_template"]
    done = subprocess.run(
        [*cli, "schema", str(SCHEMA.source), "--target", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: --target 'nope'")
    assert done.stdout == ""


def test_output_writes_the_draft_and_keeps_the_schema_it_replaces(tmp_path: Path) -> None:
    source = tmp_path / "data" / "t.csv"
    source.parent.mkdir()
    pl.DataFrame({"x": [1.5, 2.5, 3.5] * 10, "y": ["a", "b", "c"] * 10}).write_csv(source)
    schema = tmp_path / "conf" / "dataset.toml"
    schema.parent.mkdir()
    schema.write_text("# mine\n")
    cli = [sys.executable, "-m", "mlops_template", "schema", str(source), "--target", "y"]
    done = subprocess.run([*cli, "--output", str(schema)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "conf" / "dataset.toml.bak").read_text() == "# mine\n"
    loaded = load_schema(schema)  # its source is relative to the file it is written to
    assert loaded.source.resolve() == source.resolve()
    assert 'source = "../data/t.csv"' in schema.read_text()
