"""The project's own data contract, as `dataset.toml` describes it, whatever it describes.

Rows drawn from the schema (Hypothesis strategies made from each column's spec) are scored
alike by batch `predict`, `/predict` and the Open Inference Protocol (v2); a row that breaks one
rule of one column is refused on every path with a message that names that column. Drift from
the training data is measured alike by `drift` on a file and by the server's `/metrics`: none
for the training split itself, and the very feature that a shifted copy of it moved.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_template.batch import predict_file, prediction_columns
from mlops_template.card import ModelCard
from mlops_template.data import load_prepared, prepare_dataset
from mlops_template.drift import DEFAULT_THRESHOLD
from mlops_template.errors import UserError
from mlops_template.inference import OnnxModel
from mlops_template.schema import ColumnSpec, DatasetSchema, load_schema
from mlops_template.serving import create_app
from mlops_template.settings import Settings

from .conftest import ROOT

SCHEMA = load_schema(ROOT / "dataset.toml")
# Bounds for a number column that declares none: wide, and exact in float32.
WIDE = 1e6
# What a value may differ by between paths: the same float32 graph, fed the same values.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetSchema]:
    """The project's own data, prepared, and its model trained, once for the module."""
    from mlops_template.train import train_model

    assert SCHEMA.source.is_file(), f"dataset.toml names {SCHEMA.source}, which does not exist"
    root = tmp_path_factory.mktemp("project")
    manifest = prepare_dataset(SCHEMA, root / "processed")
    assert manifest.rows_train > 0
    assert manifest.rows_test > 0
    card = train_model(SCHEMA, root / "processed", root / "models")
    assert card.features == SCHEMA.features
    return root / "models", SCHEMA


@pytest.fixture(scope="module")
def model(project: tuple[Path, DatasetSchema]) -> OnnxModel:
    return OnnxModel.load(project[0])


@pytest.fixture(scope="module")
def client(project: tuple[Path, DatasetSchema]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=project[0]))) as client:
        yield client


# Bounds for a date column that declares none, as days since 1970-01-01: 1900 to 2100.
WIDE_DAYS = 25_567.0, 47_846.0
EPOCH = datetime(1970, 1, 1)


def _bounds(spec: ColumnSpec) -> tuple[float, float]:
    wide = (-WIDE_DAYS[0], WIDE_DAYS[1]) if spec.is_date else (-WIDE, WIDE)
    low, high = spec.bounds
    return max(low, wide[0]), min(high, wide[1])


def _day(days: int) -> str:
    return (EPOCH + timedelta(days=days)).date().isoformat()


def _dates(spec: ColumnSpec) -> st.SearchStrategy[str]:
    """ISO 8601 dates (or times, with no zone or UTC's) within the column's bounds."""
    low, high = _bounds(spec)
    if spec.type == "date":
        first, last = (EPOCH + timedelta(days=d) for d in (math.ceil(low), math.floor(high)))
        return st.dates(first.date(), last.date()).map(date.isoformat)
    margin = timedelta(milliseconds=1)  # a microsecond's rounding never crosses a bound
    first, last = EPOCH + timedelta(days=low) + margin, EPOCH + timedelta(days=high) - margin
    zones = st.sampled_from(["", "Z", "+00:00"])
    return st.builds(lambda m, z: m.isoformat() + z, st.datetimes(first, last), zones)


def valid_values(spec: ColumnSpec) -> st.SearchStrategy[Any]:
    """Any value the column's spec allows, as a client sends it (JSON)."""
    low, high = _bounds(spec)
    values: st.SearchStrategy[Any]
    if spec.type == "float":
        # float32 values: what the graph takes, so no path rounds a value over a bound.
        values = st.floats(low, high, allow_nan=False, allow_infinity=False, width=32)
    elif spec.type == "integer":
        values = st.integers(math.ceil(low), math.floor(high))
    elif spec.type == "category":
        values = st.sampled_from(spec.categories or ())
    elif spec.is_date:
        values = _dates(spec)
    else:
        values = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=40)
    return st.one_of(st.none(), values) if spec.nullable else values


def broken_values(spec: ColumnSpec) -> dict[str, Any]:
    """One value for each rule of the column's spec, breaking that rule alone."""
    low, high = _bounds(spec)
    broken: dict[str, Any] = {}
    if not spec.nullable:
        broken["missing"] = None
    if spec.is_numeric:
        broken["not a number"] = "not a number"
        broken[PAST_ANY_FLOAT] = int("9" * 400)  # JSON holds any integer; a float does not
        kind = int if spec.type == "integer" else float
        if spec.max is not None:
            broken["above the maximum"] = kind(math.floor(high) + max(1, math.ceil(abs(high))))
        if spec.min is not None:
            broken["below the minimum"] = kind(math.ceil(low) - max(1, math.ceil(abs(low))))
        if spec.type == "integer":
            broken["not whole"] = math.floor(low) + 0.5 if low > -WIDE else 0.5
    elif spec.type == "category":
        broken["unknown category"] = "".join(spec.categories or ()) + "?"
        if not spec.nullable:  # v2 reads an empty label as a missing one: refused all the same
            broken["empty label"] = ""
    elif spec.is_date:
        broken["not a date"] = "31/12/2023"
        broken["no such day"] = "2023-02-29"
        broken[NOT_A_STRING] = 20231231
        if spec.min is not None:
            broken["before the minimum"] = _day(math.floor(low) - 1)
        if spec.max is not None:
            broken["after the maximum"] = _day(math.ceil(high) + 1)
    else:
        broken[NOT_A_STRING] = 12  # a file's text column holds text: only JSON can send a number
    return broken


NOT_A_STRING, PAST_ANY_FLOAT = "not a string", "past any float"
JSON_ONLY = {NOT_A_STRING, PAST_ANY_FLOAT}  # what a typed file cannot hold
BROKEN = [
    pytest.param(spec.name, value, rule not in JSON_ONLY, id=f"{spec.name}: {rule}")
    for spec in SCHEMA.features
    for rule, value in broken_values(spec).items()
]


def v2_request(client: TestClient, card: ModelCard, rows: list[dict[str, Any]]) -> dict[str, Any]:
    metadata = client.get(f"/v2/models/{card.name}").json()
    kinds = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    return {
        "inputs": [
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": kinds[name],
                "data": [row[name] for row in rows],
            }
            for name in card.feature_names
        ]
    }


def batch_file(card: ModelCard, rows: list[dict[str, Any]], path: Path) -> Path:
    """The rows as a Parquet file, each column typed as the schema says, unless a value needs
    another type (a word in a number column, a fraction in an integer one)."""
    types = {"float": pl.Float64, "integer": pl.Int64}
    columns = {}
    for spec in card.features:
        values = [row[spec.name] for row in rows]
        dtype = types.get(spec.type, pl.String)  # labels, texts, and dates as ISO 8601 text
        if any(isinstance(v, str) for v in values):
            dtype = pl.String
        elif any(isinstance(v, float) and not v.is_integer() for v in values):
            dtype = pl.Float64
        columns[spec.name] = pl.Series(spec.name, values, dtype=dtype)
    pl.DataFrame(columns).write_parquet(path)
    return path


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_rows_drawn_from_the_schema_score_alike_on_every_path(
    data: st.DataObject, model: OnnxModel, client: TestClient, tmp_path: Path
) -> None:
    card = model.card
    rows = data.draw(
        st.lists(
            st.fixed_dictionaries({spec.name: valid_values(spec) for spec in card.features}),
            min_size=1,
            max_size=5,
        )
    )
    served = client.post("/predict", json={"records": rows})
    assert served.status_code == 200, served.text
    v2 = client.post(f"/v2/models/{card.name}/infer", json=v2_request(client, card, rows))
    assert v2.status_code == 200, v2.text
    scored = tmp_path / "scored.parquet"
    predict_file(model, batch_file(card, rows, tmp_path / "rows.parquet"), scored)
    batch = pl.read_parquet(scored)
    outputs = {output["name"]: output["data"] for output in v2.json()["outputs"]}
    predictions = served.json()["predictions"]
    first = prediction_columns(card)[0]
    if card.task == "classification":
        labels = [p["label"] for p in predictions]
        assert outputs["label"] == labels
        assert batch.get_column(first).cast(pl.String).to_list() == labels
    else:
        values = [p["value"] for p in predictions]
        assert outputs[next(iter(outputs))] == pytest.approx(values, rel=TOLERANCE)
        assert batch.get_column(first).to_list() == pytest.approx(values, rel=TOLERANCE)


@pytest.mark.parametrize(("column", "value", "in_files"), BROKEN)
def test_a_row_that_breaks_one_rule_is_refused_naming_the_column_on_every_path(
    model: OnnxModel, client: TestClient, tmp_path: Path, column: str, value: Any, in_files: bool
) -> None:
    card = model.card
    row = {**card.example, column: value}
    named = f"column '{column}'"
    served = client.post("/predict", json={"records": [row]})
    assert served.status_code == 422, served.text
    assert [line.startswith(named) for line in served.json()["detail"]] == [True], served.text
    v2 = client.post(f"/v2/models/{card.name}/infer", json=v2_request(client, card, [row]))
    assert v2.status_code == 422, v2.text
    assert v2.json()["error"].startswith(named), v2.text
    if in_files:
        scored = tmp_path / "scored.parquet"
        with pytest.raises(UserError, match=re.escape(f"column '{column}'")):
            predict_file(model, batch_file(card, [row], tmp_path / "row.parquet"), scored)
        assert not scored.exists()


@pytest.fixture(scope="module")
def shifted(project: tuple[Path, DatasetSchema]) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """The training split, a copy of it with one feature moved, and that feature: a number or
    a date all at its largest training value, or a category all at its rarest."""
    models, schema = project
    train = load_prepared(models.parent / "processed", schema)[0]
    card = ModelCard.model_validate_json((models / "current" / "model.json").read_text())
    name = max(card.profile, key=lambda feature: len(card.profile[feature].shares))
    spec = next(f for f in card.features if f.name == name)
    column = pl.col(name)
    if spec.type == "category":
        shares = card.profile[name].shares[:-1]
        moved = pl.lit(spec.categories[shares.index(min(shares))])  # type: ignore[index]
    else:
        moved = column.drop_nulls().max()
    return train, train.with_columns(moved.alias(name)), name


def records(frame: pl.DataFrame, card: ModelCard) -> list[dict[str, Any]]:
    """A frame's features as JSON records: dates and times as their ISO 8601 text."""
    dates = [pl.col(f.name).cast(pl.String) for f in card.features if f.is_date]
    return frame.select(card.feature_names).with_columns(dates).to_dicts()


def test_drift_of_a_file_names_the_shifted_feature_alone(
    project: tuple[Path, DatasetSchema],
    shifted: tuple[pl.DataFrame, pl.DataFrame, str],
    tmp_path: Path,
) -> None:
    models, _ = project
    train, moved, name = shifted

    def drift(frame: pl.DataFrame) -> dict[str, tuple[float, str]]:
        frame.write_parquet(tmp_path / "rows.parquet")
        plot = tmp_path / "drift.png"
        command = ["drift", str(tmp_path / "rows.parquet"), "--model-dir", str(models)]
        done = subprocess.run(
            [sys.executable, "-m", "mlops_template", *command, "--plot", str(plot)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert plot.read_bytes().startswith(b"\x89PNG")
        table = re.findall(r"^│ (.+?) +│ ([\d.]+) │ (\w+) +│", done.stdout, re.M)
        return {feature: (float(psi), verdict) for feature, psi, verdict in table}

    same = drift(train)
    assert same, "no feature was measured"
    assert all(psi < 0.01 and verdict == "stable" for psi, verdict in same.values()), same
    found = drift(moved)
    psi, verdict = found.pop(name)
    assert psi > DEFAULT_THRESHOLD
    assert verdict == "drifted"
    assert found == {feature: same[feature] for feature in found}  # no other feature moved
    assert len(found) == len(same) - 1


def test_the_server_reports_drift_in_metrics_and_logs_the_crossing(
    project: tuple[Path, DatasetSchema],
    shifted: tuple[pl.DataFrame, pl.DataFrame, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    models, _ = project
    train, moved, name = shifted
    settings = Settings(model_dir=models, drift_window=train.height, max_batch_rows=train.height)

    def psi(client: TestClient) -> dict[str, float]:
        lines = client.get("/metrics").text.splitlines()
        found = [re.match(r'model_feature_drift_psi\{feature="(.+)"\} (\S+)$', x) for x in lines]
        return {m.group(1): float(m.group(2)) for m in found if m}

    with TestClient(create_app(settings)) as client, caplog.at_level(logging.INFO):
        card = ModelCard.model_validate(client.get("/model").json())
        assert psi(client) == {}  # nothing until a window's rows came
        for frame in (train, moved, train):
            answer = client.post("/predict", json={"records": records(frame, card)})
            assert answer.status_code == 200, answer.text
            if frame is moved:
                shifted_psi = psi(client)
                assert shifted_psi.pop(name) > DEFAULT_THRESHOLD
                assert all(value < 0.01 for value in shifted_psi.values()), shifted_psi
        assert all(value < 0.01 for value in psi(client).values())
    said = [(r.getMessage(), getattr(r, "feature", None)) for r in caplog.records]
    assert said.count(("feature drifted", name)) == 1
    assert said.count(("feature no longer drifted", name)) == 1
    assert not [s for s in said if "drifted" in s[0] and s[1] != name]
