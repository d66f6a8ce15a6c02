"""Shared fixtures: the shipped schema, and a prepared dataset and trained model made once."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlops_template._fs import current_version
from mlops_template.card import ModelCard
from mlops_template.data import prepare_dataset
from mlops_template.schema import DatasetSchema, load_schema

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
PENGUINS = DATA / "penguins.csv"
PENGUINS_SCHEMA = DATA / "penguins.toml"
# The text example: a conversation's topic from its question and first answer.
QUESTIONS = DATA / "questions.csv"
QUESTIONS_SCHEMA = DATA / "questions.toml"
# One penguin's features, as a client sends them: a Gentoo.
GENTOO = {
    "island": "Biscoe",
    "bill_length_mm": 47.5,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 218.0,
    "body_mass_g": 4950.0,
    "sex": "male",
}


@pytest.fixture(scope="session")
def schema() -> DatasetSchema:
    """The tests' dataset schema: penguin species from measurements, on the tests' own data."""
    return load_schema(PENGUINS_SCHEMA)


@pytest.fixture(scope="session")
def prepared_dir(schema: DatasetSchema, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The penguins data, prepared once for the session."""
    out = tmp_path_factory.mktemp("processed")
    prepare_dataset(schema, out)
    return out


@pytest.fixture(scope="session")
def trained_dir(
    schema: DatasetSchema, prepared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A model trained once for the session; tests that change it copy it first."""
    from mlops_template.train import train_model

    out = tmp_path_factory.mktemp("models")
    train_model(schema, prepared_dir, out)
    return out


@pytest.fixture(scope="session")
def text_schema() -> DatasetSchema:
    """The text example's schema: two text features and a number."""
    return load_schema(QUESTIONS_SCHEMA)


@pytest.fixture(scope="session")
def text_models(text_schema: DatasetSchema, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The questions data prepared and trained once: a folder with `processed/` and `models/`."""
    from mlops_template.train import train_model

    root = tmp_path_factory.mktemp("text")
    prepare_dataset(text_schema, root / "processed")
    train_model(text_schema, root / "processed", root / "models")
    return root


@pytest.fixture
def model_dir(trained_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the trained model, safe to tamper with."""
    return Path(shutil.copytree(trained_dir, tmp_path / "models", symlinks=True))


@pytest.fixture(scope="session")
def card(trained_dir: Path) -> ModelCard:
    from mlops_template.card import CARD_FILE, load_card

    return load_card(current_version(trained_dir) / CARD_FILE)


@pytest.fixture(scope="session")
def api(trained_dir: Path) -> Iterator[TestClient]:
    """An in-process client of the model server, started once (lifespan included)."""
    from fastapi.testclient import TestClient

    from mlops_template.serving import create_app
    from mlops_template.settings import Settings

    app = create_app(Settings(model_dir=trained_dir, max_batch_rows=64, max_body_bytes=64 * 1024))
    with TestClient(app) as client:
        yield client
