"""Bring your own dataset: a different CSV and schema, regression this time, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.batch import predict_file
from mlops_template.data import prepare_dataset, read_dataset, split_rows
from mlops_template.errors import DataSchemaError
from mlops_template.inference import OnnxModel
from mlops_template.schema import load_schema
from mlops_template.train import train_model

from .conftest import PENGUINS, PENGUINS_SCHEMA

HOUSES_SCHEMA = """
name = "houses"
source = "houses.csv"
null_values = ["", "?"]
ignore = ["listing_id"]

[target]
name = "price_k"
type = "float"
min = 0

[split]
test_fraction = 0.25
seed = 3

[features.area_m2]
type = "float"
min = 10
max = 1000

[features.rooms]
type = "integer"
min = 1
max = 20

[features.district]
type = "category"
categories = ["north", "south", "centre"]
nullable = true

[features.listed_on]
type = "date"
min = 2015-01-01
"""


def write_houses(folder: Path, rows: int = 400) -> None:
    rng = np.random.default_rng(0)
    area = rng.uniform(30, 250, rows).round(1)
    rooms = np.clip((area / 35).round() + rng.integers(-1, 2, rows), 1, 20).astype(int)
    district = rng.choice(["north", "south", "centre", "?"], rows, p=[0.3, 0.3, 0.3, 0.1])
    bonus = np.select([district == "centre", district == "north"], [120.0, 40.0], 0.0)
    days = rng.integers(0, 3650, rows)  # listed over ten years, prices up 10 (k€) a year
    price = 2.5 * area + 15 * rooms + bonus + days / 36.5 + rng.normal(0, 15, rows)
    listed = np.datetime64("2015-01-01") + days.astype("timedelta64[D]")
    pl.DataFrame(
        {
            "listing_id": np.arange(rows),
            "area_m2": area,
            "rooms": rooms,
            "district": district,
            "listed_on": listed.astype(str),
            "price_k": price.round(2),
        }
    ).write_csv(folder / "houses.csv")
    (folder / "dataset.toml").write_text(HOUSES_SCHEMA)


def test_a_regression_dataset_runs_through_every_stage(tmp_path: Path) -> None:
    write_houses(tmp_path)
    schema = load_schema(tmp_path / "dataset.toml")
    assert schema.task == "regression"
    manifest = prepare_dataset(schema, tmp_path / "processed")
    assert (manifest.rows_train, manifest.rows_test) == (300, 100)
    card = train_model(schema, tmp_path / "processed", tmp_path / "models")
    assert card.task == "regression"
    assert card.classes is None
    assert card.metrics["r2"] > 0.9
    model = OnnxModel.load(tmp_path / "models")
    prediction = model.predict(
        {
            "area_m2": [100.0, 100.0, 100.0],
            "rooms": [3, 3, 3],
            "district": ["centre", None, None],
            "listed_on": ["2020-06-01", "2020-06-01", "2024-06-01"],
        }
    )
    assert prediction.values is not None
    assert prediction.values[0] - prediction.values[1] == pytest.approx(120, abs=40)
    assert prediction.values[2] - prediction.values[1] == pytest.approx(40, abs=10)  # 4 years
    rows = predict_file(model, tmp_path / "houses.csv", tmp_path / "scored.parquet", chunk_size=64)
    scored = pl.read_parquet(tmp_path / "scored.parquet")
    assert rows == 400
    assert scored.columns[-1] == "predicted_price_k"
    assert scored.schema["rooms"] == pl.Int64
    assert scored.schema["listed_on"] == pl.Date


def test_integer_features_reject_fractions(tmp_path: Path) -> None:
    write_houses(tmp_path, rows=50)
    text = (tmp_path / "houses.csv").read_text().splitlines()
    fields = text[4].split(",")
    fields[2] = "2.5"
    text[4] = ",".join(fields)
    (tmp_path / "houses.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(
        Exception, match=r"column 'rooms': expected a whole number; found '2.5' \(line 5\)"
    ):
        prepare_dataset(load_schema(tmp_path / "dataset.toml"), tmp_path / "processed")


def test_penguins_body_mass_regression_from_the_same_data(tmp_path: Path) -> None:
    text = PENGUINS_SCHEMA.read_text()
    start = text.index("[target]")
    end = text.index("[split]")
    target = '[target]\nname = "body_mass_g"\ntype = "float"\nmin = 2000.0\nmax = 7000.0\n\n'
    body = text.index("[features.body_mass_g]")
    sex = text.index("[features.sex]")
    species = (
        '[features.species]\ntype = "category"\ncategories = ["Adelie", "Chinstrap", "Gentoo"]\n\n'
    )
    variant = text[:start] + target + text[end:body] + species + text[sex:]
    variant = variant.replace('source = "penguins.csv"', f'source = "{PENGUINS}"')
    (tmp_path / "dataset.toml").write_text(variant)
    schema = load_schema(tmp_path / "dataset.toml")
    assert schema.task == "regression"
    manifest = prepare_dataset(schema, tmp_path / "processed")
    assert manifest.rows_dropped_missing_target == 2
    card = train_model(schema, tmp_path / "processed", tmp_path / "models")
    assert card.metrics["r2"] > 0.7
    assert (
        json.loads((current_version(tmp_path / "models") / "model.json").read_text())["task"]
        == "regression"
    )


def test_a_split_grouped_by_an_ignored_column_keeps_each_value_on_one_side(
    tmp_path: Path,
) -> None:
    write_houses(tmp_path)
    frame = pl.read_csv(tmp_path / "houses.csv")
    frame.with_columns(building=pl.col("listing_id") // 4).write_csv(tmp_path / "houses.csv")
    text = HOUSES_SCHEMA.replace('ignore = ["listing_id"]', 'ignore = ["listing_id", "building"]')
    (tmp_path / "dataset.toml").write_text(text.replace("seed = 3", 'seed = 3\ngroup = "building"'))
    schema = load_schema(tmp_path / "dataset.toml")
    train, test = split_rows(read_dataset(schema), schema)
    buildings = [set(part.get_column("building").to_list()) for part in (train, test)]
    assert buildings[0].isdisjoint(buildings[1])
    assert len(buildings[1]) == 25  # a quarter of the 100 buildings, every listing of each
    manifest = prepare_dataset(schema, tmp_path / "processed")
    assert (manifest.rows_train, manifest.rows_test) == (300, 100)
    assert "building" not in manifest.columns  # read for the split, not kept
    missing = text.replace("seed = 3", 'seed = 3\ngroup = "block"').replace(
        '"building"]', '"block"]'
    )
    (tmp_path / "dataset.toml").write_text(missing)
    with pytest.raises(DataSchemaError, match="column 'block': missing from the file"):
        prepare_dataset(load_schema(tmp_path / "dataset.toml"), tmp_path / "processed")
