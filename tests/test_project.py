"""The project's own dataset.toml and data: whatever they describe, they prepare and train."""

from __future__ import annotations

from pathlib import Path

from mlops_template.data import prepare_dataset
from mlops_template.inference import OnnxModel
from mlops_template.schema import load_schema
from mlops_template.train import train_model

from .conftest import ROOT


def test_the_project_dataset_prepares_trains_and_predicts(tmp_path: Path) -> None:
    schema = load_schema(ROOT / "dataset.toml")
    assert schema.source.is_file(), f"dataset.toml names {schema.source}, which does not exist"
    manifest = prepare_dataset(schema, tmp_path / "processed")
    assert manifest.rows_train > 0
    assert manifest.rows_test > 0
    card = train_model(schema, tmp_path / "processed", tmp_path / "models")
    assert card.task == schema.task
    assert card.features == schema.features
    expected = {"classification": {"accuracy", "f1_macro"}, "regression": {"rmse", "mae", "r2"}}
    assert set(card.metrics) == expected[schema.task]
    model = OnnxModel.load(tmp_path / "models")
    prediction = model.predict({name: [value] for name, value in card.example.items()})
    assert len(prediction) == 1
