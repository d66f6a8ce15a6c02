"""One data contract from CSV to HTTP: the same rules and messages on every path, any column
name a CSV can hold, number-like categories, a choice of model that exports whole."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_template import contract, frames
from mlops_template._fs import current_version
from mlops_template.batch import predict_file
from mlops_template.card import input_names
from mlops_template.data import prepare_dataset, to_model_inputs
from mlops_template.errors import ConfigError, DataSchemaError, InputValidationError
from mlops_template.inference import OnnxModel
from mlops_template.schema import ColumnSpec, DatasetSchema, day_number, load_schema

from .conftest import PENGUINS

# Headers as people write them: spaces, hyphens, parentheses, a leading digit, non-ASCII.
RENAMED = {
    "island": "Island",
    "bill_length_mm": "bill length (mm)",
    "bill_depth_mm": "bill-depth",
    "flipper_length_mm": "2nd flipper measure",
    "body_mass_g": "masse corporelle (g)",
    "sex": "sex",
}


# Dates and times, as ISO 8601 text: a date with some missing, a time with its zone.
DATED = ("observed on", "logged at")


def odd_names_project(tmp_path: Path) -> Path:
    """The penguins with awkward headers, `sex` coded as 1/2, a date and a time, and its
    dataset.toml."""
    frame = pl.read_csv(PENGUINS, infer_schema=False, null_values=["NA"])
    row = pl.int_range(pl.len())
    day = pl.format("{}-{}-13", "year", (row % 12 + 1).cast(pl.String).str.zfill(2))
    frame = frame.rename(RENAMED).with_columns(
        pl.col("sex").replace_strict({"female": "1", "male": "2.0"}, default=None),
        pl.when(row % 10 == 3).then(None).otherwise(day).alias(DATED[0]),
        pl.format("{}T{}:30:00+02:00", day, (row % 14 + 6).cast(pl.String).str.zfill(2)).alias(
            DATED[1]
        ),
    )
    frame.write_csv(tmp_path / "odd.csv", null_value="NA")
    features = "\n".join(
        [
            '[features."Island"]\ntype = "category"\ncategories = ["Biscoe", "Dream", "Torgersen"]',
            '[features."bill length (mm)"]\ntype = "float"\nnullable = true\nmin = 20\nmax = 80',
            '[features."bill-depth"]\ntype = "float"\nnullable = true\nmin = 10\nmax = 30',
            '[features."2nd flipper measure"]\ntype = "float"\nnullable = true\nmin = 150\n'
            "max = 260",
            '[features."masse corporelle (g)"]\ntype = "integer"\nnullable = true\nmin = 2000\n'
            "max = 7000",
            '[features.sex]\ntype = "category"\nnullable = true\ncategories = [1, 2]',
            '[features."observed on"]\ntype = "date"\nnullable = true\nmin = 2007-01-01\n'
            "max = 2009-12-31",
            '[features."logged at"]\ntype = "datetime"\nmin = 2007-01-01T00:00:00Z',
        ]
    )
    (tmp_path / "dataset.toml").write_text(
        'name = "odd"\nsource = "odd.csv"\nignore = ["year"]\n'
        '[target]\nname = "species"\ntype = "category"\n'
        'categories = ["Adelie", "Chinstrap", "Gentoo"]\n' + features + "\n",
        encoding="utf-8",
    )
    return tmp_path / "dataset.toml"


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetSchema, Path, Path]:
    from mlops_template.train import train_model

    root = tmp_path_factory.mktemp("odd")
    schema = load_schema(odd_names_project(root))
    prepare_dataset(schema, root / "processed")
    train_model(schema, root / "processed", root / "models")
    return schema, root / "processed", root / "models"


def test_any_header_trains_exports_and_serves_under_the_users_names(
    odd: tuple[DatasetSchema, Path, Path],
) -> None:
    from mlops_template.serving import create_app
    from mlops_template.settings import Settings

    _, _, models = odd
    model = OnnxModel.load(models)
    card = model.card
    assert list(card.inputs) == [*RENAMED.values(), *DATED]
    assert all(name.isidentifier() for name in card.inputs.values())
    assert card.metrics["accuracy"] > 0.9
    assert set(card.example) == {*RENAMED.values(), *DATED}
    with TestClient(create_app(Settings(model_dir=models))) as client:
        answer = client.post("/predict", json={"records": [card.example]})
        assert answer.status_code == 200, answer.text
        bad = client.post("/predict", json={"records": [{**card.example, "bill-depth": 99.0}]})
        assert bad.status_code == 422
        assert bad.json()["detail"] == [
            "column 'bill-depth': above the maximum 30; found 99.0 (record 0)"
        ]
        meta = client.get(f"/v2/models/{card.name}").json()
        assert [t["name"] for t in meta["inputs"]] == [*RENAMED.values(), *DATED]
        docs = client.get("/openapi.json").json()
        assert "bill length (mm)" in json.dumps(docs)


def test_a_time_is_the_same_moment_in_any_zone_and_a_bad_date_is_named(
    odd: tuple[DatasetSchema, Path, Path],
) -> None:
    _, processed, models = odd
    train = pl.read_parquet(current_version(processed) / "train.parquet")
    assert train.schema[DATED[0]] == pl.Date
    assert train.schema[DATED[1]] == pl.Datetime("us", "UTC")
    model = OnnxModel.load(models)
    row = {k: [v] for k, v in model.card.example.items()}
    moments = ["2008-03-13T10:30:00+02:00", "2008-03-13T08:30:00Z", "2008-03-13 08:30"]
    answers = [model.predict({**row, DATED[1]: [m]}).probabilities.tolist() for m in moments]  # type: ignore[union-attr]
    assert answers[0] == answers[1] == answers[2]
    for wrong, message in [
        ("2008-02-30", "expected an ISO 8601 date"),
        ("13/03/2008", "expected an ISO 8601 date"),
        ("2008-03-13T10:00", "expected an ISO 8601 date"),  # a time where a date is wanted
        (20080313, "expected an ISO 8601 date"),
        ("2006-12-31", "before the minimum 2007-01-01"),
        ("2010-01-01", "after the maximum 2009-12-31"),
    ]:
        with pytest.raises(InputValidationError, match=f"column 'observed on': {message}"):
            model.predict({**row, DATED[0]: [wrong]})


@pytest.mark.parametrize("kind", ["date", "datetime"])
def test_dates_read_alike_from_csv_text_a_typed_parquet_json_and_tensors(
    tmp_path: Path, kind: str
) -> None:
    """One reading of dates: the numbers the model takes, the rows refused and the missing
    rows are the same from a CSV, a Parquet file of typed dates, JSON records and a tensor."""
    import datetime as dt

    spec = ColumnSpec(name="when", type=kind, nullable=True, max=dt.date(2030, 1, 1))
    good = ["1969-12-31", "2024-02-29", None, "2024-05-31"]
    if kind == "datetime":
        good += ["2024-05-31T23:30:00-01:00", "2024-06-01T00:30:00.250000"]
    csv = tmp_path / "dates.csv"
    pl.DataFrame({"when": good}).write_csv(csv)
    moments = [dt.datetime.fromisoformat(v) if v else None for v in good]
    utc = [m.replace(tzinfo=m.tzinfo or dt.UTC).astimezone(dt.UTC) if m else None for m in moments]
    typed = pl.Series("when", utc, dtype=pl.Datetime("us", "UTC"))
    parquet = tmp_path / "dates.parquet"
    pl.DataFrame([typed.cast(pl.Date) if kind == "date" else typed]).write_parquet(parquet)
    read = [
        contract.read_values(spec, good),
        contract.read_values(spec, [v if v is not None else "" for v in good], True),
    ]
    for path in (csv, parquet):
        frame = pl.read_csv(path, infer_schema=False) if path == csv else pl.read_parquet(path)
        read.append(frames.read_polars(spec, frame.select(frames.polars_exprs(spec, "x")), "x"))
    expected = [day_number(m) if m else math.nan for m in moments]
    for column in read:
        assert column.numbers is not None
        np.testing.assert_array_equal(column.numbers, expected)
        assert column.null is not None
        assert column.null.tolist() == [v is None for v in good]
        assert contract.check([column]) == []
    assert expected[:2] == [-1.0, 19782.0]
    if kind == "datetime":  # the same moment as 2024-06-01T00:30Z, a quarter-second later
        assert expected[5] - expected[4] == pytest.approx(0.25 / 86_400)
    bad = ["2024-13-01", "tomorrow", "", "2030-01-02"]
    faults = contract.check([contract.read_values(spec, bad)])
    assert [(f.message, f.rows) for f in faults] == [
        (f"expected {contract.expected(spec)}", (0, 1, 2)),
        ("after the maximum 2030-01-01", (3,)),
    ]


def test_a_time_bound_keeps_its_time_through_the_card() -> None:
    import datetime as dt

    moment = dt.datetime(2024, 5, 31, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    spec = ColumnSpec(name="t", type="datetime", min=moment, max=dt.date(2030, 1, 1))
    again = ColumnSpec.model_validate_json(spec.model_dump_json())
    assert (again.min, again.max) == (moment, dt.date(2030, 1, 1))
    assert again.bounds[0] == day_number(moment) == 19874.5
    message = contract.check([contract.read_values(spec, ["2024-05-31T11:59:59Z"])])[0].message
    assert message == "before the minimum 2024-05-31T14:00:00+02:00"


def test_a_date_column_is_refused_a_numeric_bound_and_a_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`min` of a date column must be a date"):
        ColumnSpec(name="d", type="date", min=3)
    with pytest.raises(ValueError, match="`max` of a float column must be a number"):
        ColumnSpec(name="d", type="float", max="2024-01-01")  # type: ignore[arg-type]
    toml = tmp_path / "dataset.toml"
    toml.write_text(
        'name = "d"\nsource = "d.csv"\n[target]\nname = "when"\ntype = "date"\n'
        '[features.x]\ntype = "float"\n'
    )
    with pytest.raises(ConfigError, match="the target cannot be date"):
        load_schema(toml)


def test_number_like_categories_match_any_spelling(odd: tuple[DatasetSchema, Path, Path]) -> None:
    _, processed, models = odd
    train = pl.read_parquet(current_version(processed) / "train.parquet")
    assert set(train.get_column("sex").drop_nulls().unique().to_list()) == {"1", "2"}
    model = OnnxModel.load(models)
    row = {k: [v] for k, v in model.card.example.items()}
    labels = {
        spelling: model.predict({**row, "sex": [spelling]}).labels.tolist()[0]  # type: ignore[union-attr]
        for spelling in (2, 2.0, "2", "2.0")
    }
    assert len(set(labels.values())) == 1
    for wrong in (True, 3, "two"):
        with pytest.raises(InputValidationError, match="column 'sex'"):
            model.predict({**row, "sex": [wrong]})


def test_the_same_fault_gets_the_same_message_on_every_path(
    schema: DatasetSchema, trained_dir: Path, tmp_path: Path, api: TestClient
) -> None:
    """An out-of-range flipper, through prepare, batch predict, /predict and v2."""
    message = "column 'flipper_length_mm': above the maximum 260; found "
    lines = PENGUINS.read_text().splitlines()
    lines[3] = lines[3].replace("195", "999")
    source = tmp_path / "bad.csv"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataSchemaError) as prepared:
        prepare_dataset(schema.model_copy(update={"source": source}), tmp_path / "out")
    with pytest.raises(DataSchemaError) as batch:
        predict_file(OnnxModel.load(trained_dir), source, tmp_path / "scored.parquet")
    model = OnnxModel.load(trained_dir)
    record = {**model.card.example, "flipper_length_mm": 999}
    served = api.post("/predict", json={"records": [record]}).json()["detail"]
    tensors = [
        {
            "name": k,
            "shape": [1],
            "datatype": "BYTES" if isinstance(v, str) else "FP32",
            "data": [v],
        }
        for k, v in record.items()
    ]
    v2 = api.post("/v2/models/penguins/infer", json={"inputs": tensors}).json()["error"]
    assert f"{message}'999' (line 4)" in str(prepared.value)
    assert f"{message}'999' (line 4)" in str(batch.value)
    assert served == [f"{message}999 (record 0)"]
    assert v2 == f"{message}999 (row 0)"
    assert not (tmp_path / "scored.parquet").exists()


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize(
    "model",
    [
        {"type": "linear"},
        {"type": "random_forest", "n_estimators": 25, "max_depth": 8},
        {"type": "gradient_boosting", "n_estimators": 40},
    ],
    ids=lambda m: m["type"],
)
def test_every_model_exports_whole_and_matches_scikit_learn(
    schema: DatasetSchema, prepared_dir: Path, task: str, model: dict[str, Any]
) -> None:
    from mlops_template.data import load_prepared
    from mlops_template.schema import DatasetSchema as Schema
    from mlops_template.train import export_onnx, fit

    data = schema.model_dump()
    if task == "regression":  # body mass from the rest, species among the features
        mass = next(f for f in data["features"] if f["name"] == "body_mass_g")
        data["features"] = [f for f in data["features"] if f["name"] != "body_mass_g"]
        data["features"].append({**data["target"], "description": ""})
        data["target"] = {**mass, "nullable": False}
    variant = Schema.model_validate({**data, "model": model})
    train, test, _ = load_prepared(prepared_dir)
    if task == "regression":
        train, test = (f.filter(pl.col("body_mass_g").is_not_null()) for f in (train, test))
    pipeline = fit(variant, train)
    import onnxruntime as ort

    session = ort.InferenceSession(export_onnx(pipeline, variant))
    names = input_names(variant.features)
    feed = to_model_inputs(test, variant.features, names)
    frame = pl.DataFrame({k: v.reshape(-1) for k, v in feed.items()})
    outputs = session.run(None, feed)
    if task == "classification":
        assert outputs[0].tolist() == pipeline.predict(frame).tolist()
        np.testing.assert_allclose(outputs[1], pipeline.predict_proba(frame), atol=1e-5)
    else:
        np.testing.assert_allclose(outputs[0].reshape(-1), pipeline.predict(frame), rtol=1e-5)


def test_a_model_table_typo_is_named(tmp_path: Path) -> None:
    from mlops_template.errors import ConfigError

    path = odd_names_project(tmp_path)
    path.write_text(
        path.read_text() + '[model]\ntype = "random_forest"\nn_estimator = 10\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"model\.n_estimator: Extra inputs"):
        load_schema(path)


def test_batch_predict_keeps_the_types_of_other_columns(
    trained_dir: Path, prepared_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    pl.read_csv(PENGUINS, null_values=["NA"]).write_csv(source, null_value="NA")
    predict_file(OnnxModel.load(trained_dir), source, tmp_path / "out.parquet", chunk_size=50)
    scored = pl.read_parquet(tmp_path / "out.parquet")
    assert scored.schema["year"] == pl.Int64
    assert scored.schema["body_mass_g"] == pl.Float64
    assert scored.schema["species"] == pl.String
    assert scored.height == 344


@pytest.mark.parametrize("bounds", [{}, {"min": 0}, {"max": 1e6}], ids=["none", "min", "max"])
@pytest.mark.parametrize("kind", ["float", "integer"])
@pytest.mark.parametrize("first", [1.0, None], ids=["all-present", "one-missing"])
def test_an_infinity_is_refused_whatever_the_bounds_and_the_other_rows(
    kind: str, bounds: dict[str, float], first: float | None
) -> None:
    """A column without bounds once let infinities through whenever no value was missing:
    `min`/`max` left out were taken as -inf/inf, which infinity meets."""
    spec = ColumnSpec(name="reading", type=kind, nullable=True, **bounds)  # type: ignore[arg-type]
    for value, row in ((math.inf, 1), (-math.inf, 1)):
        values = [first, value, 2.0]
        faults = contract.check([contract.read_values(spec, values)])
        assert [(f.message, f.rows) for f in faults] == [("not a finite number", (row,))]
        frame = pl.DataFrame({"reading": values}, schema={"reading": pl.Float64})
        read = frame.select(frames.polars_exprs(spec, "x"))
        faults = contract.check([frames.read_polars(spec, read, "x")])
        assert [(f.message, f.rows) for f in faults] == [("not a finite number", (row,))]


def test_categories_reach_onnxruntime_as_bytes_that_read_as_their_labels() -> None:
    """`levels` hands onnxruntime NUL-padded UTF-8 bytes, its fastest string input; each must
    reach the graph as exactly its label: the longest (no padding left but the NUL), a
    non-ASCII one, and the empty missing level included. (If onnxruntime ever kept the padding,
    every category but the longest would become unknown to the model, silently.)"""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.preprocessing import OneHotEncoder

    spec = ColumnSpec(name="city", type="category", categories=["Zürich", "Bern", "Genève-Ville"])
    labels = [*spec.categories, contract.MISSING_CATEGORY]
    encoder = OneHotEncoder(categories=[labels]).fit(np.array(labels, dtype=object)[:, None])
    graph = to_onnx(encoder, initial_types=[("city", StringTensorType([None, 1]))])
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    codes = np.array([2, 0, contract.NULL, 1, 0, 2], dtype=np.int32)
    encoded = contract.encode(contract.Column(spec, codes=codes))
    assert encoded.dtype.kind == "S"
    as_bytes = session.run(None, {"city": encoded})[0]
    as_strings = session.run(None, {"city": np.array(labels, dtype=object)[codes][:, None]})[0]
    np.testing.assert_array_equal(as_bytes, as_strings)
    np.testing.assert_array_equal(as_bytes, np.eye(len(labels))[codes])  # each its own level


NEAR_LABELS = ["Dream", "dream", "Dream ", "Dreamland", "Dre", "Genève-Ville de Lausanne", "Biscoe"]
NEAR_LABELS += ["1", "1.0", "01", "2", "2.0", "1e0", " 2"]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    values=st.lists(st.none() | st.sampled_from(NEAR_LABELS) | st.text(max_size=30), max_size=40),
    number_like=st.booleans(),
)
def test_a_few_categories_compared_in_turn_label_as_the_lookup_and_the_api_do(
    values: list[str | None], number_like: bool
) -> None:
    """Up to `_COMPARED` categories are matched in a file by comparing each label in turn,
    more by Polars' lookup. Every value must get the same category (or none) either way,
    labels that differ only in case, a space or a suffix, and labels past 12 bytes (stored
    out of line) included; and a number-like category the same as the API gives the same
    string (`" 2"` once named category 2 in a request but no category in a file)."""
    labels = ["1", "2"] if number_like else ["Dream", "Genève-Ville de Lausanne", "Biscoe"]
    spec = ColumnSpec(name="c", type="category", categories=labels, nullable=True)
    frame = pl.DataFrame({"c": values}, schema={"c": pl.String})
    compared = frame.select(frames.typed_expr(spec, enum=True)).to_series()
    assert compared.dtype == pl.Enum(spec.categories)
    if number_like:
        codes = contract.read_values(spec, values).codes
        assert codes is not None
        assert compared.to_list() == [labels[c] if c >= 0 else None for c in codes]
    else:
        looked_up = frame.select(pl.col("c").cast(pl.Enum(spec.categories), strict=False))
        assert compared.to_list() == looked_up.to_series().to_list()
