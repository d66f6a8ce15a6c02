from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, MODEL_FILE, ModelCard, input_names
from mlops_template.data import TEST_FILE, TRAIN_FILE, to_model_inputs
from mlops_template.errors import DataFileError
from mlops_template.inference import OnnxModel
from mlops_template.schema import DatasetSchema
from mlops_template.train import build_pipeline, evaluate_model, train_model


def frame(data: pl.DataFrame, schema: DatasetSchema) -> pl.DataFrame:
    inputs = to_model_inputs(data, schema.features, input_names(schema.features))
    return pl.DataFrame({k: v.reshape(-1) for k, v in inputs.items()})


def test_onnx_predictions_equal_scikit_learn_for_every_test_row(
    schema: DatasetSchema, prepared_dir: Path, trained_dir: Path
) -> None:
    train = pl.read_parquet(current_version(prepared_dir) / TRAIN_FILE)
    test = pl.read_parquet(current_version(prepared_dir) / TEST_FILE)
    pipeline = build_pipeline(schema).fit(
        frame(train, schema), train.get_column("species").to_numpy()
    )
    model = OnnxModel.load(trained_dir)
    prediction = model.run(to_model_inputs(test, schema.features, input_names(schema.features)))
    assert prediction.labels is not None
    assert prediction.probabilities is not None
    np.testing.assert_array_equal(prediction.labels, pipeline.predict(frame(test, schema)))
    np.testing.assert_allclose(
        prediction.probabilities, pipeline.predict_proba(frame(test, schema)), atol=1e-5
    )
    assert len(prediction) == test.height == 69


def test_card_describes_the_model(
    card: ModelCard, schema: DatasetSchema, trained_dir: Path
) -> None:
    onnx = (current_version(trained_dir) / MODEL_FILE).read_bytes()
    assert card.onnx_sha256 == hashlib.sha256(onnx).hexdigest()
    assert card.version == card.onnx_sha256[:12]
    assert card.features == schema.features
    assert card.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert card.dataset.source_sha256 == hashlib.sha256(schema.source.read_bytes()).hexdigest()
    assert (card.dataset.rows_train, card.dataset.rows_test) == (275, 69)
    assert {
        "scikit-learn",
        "skl2onnx",
        "onnxruntime",
        "polars",
        "python",
    } <= card.library_versions.keys()
    assert card.onnx_opset == 17


def test_held_out_macro_f1_is_at_least_095(card: ModelCard) -> None:
    assert card.metrics["f1_macro"] >= 0.95
    assert card.metrics["accuracy"] >= 0.95


def test_same_data_and_seed_give_the_same_onnx_file(
    schema: DatasetSchema, prepared_dir: Path, trained_dir: Path, tmp_path: Path
) -> None:
    train_model(schema, prepared_dir, tmp_path)
    assert (current_version(tmp_path) / MODEL_FILE).read_bytes() == (
        current_version(trained_dir) / MODEL_FILE
    ).read_bytes()


def test_train_without_prepared_data_says_what_to_run(
    schema: DatasetSchema, tmp_path: Path
) -> None:
    with pytest.raises(DataFileError, match="prepared data not found") as caught:
        train_model(schema, tmp_path / "empty", tmp_path / "models")
    assert "make prepare" in caught.value.hint
    assert not (tmp_path / "models").exists()


def test_failed_export_keeps_the_previous_model(
    schema: DatasetSchema, prepared_dir: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlops_template.train as train_module

    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in current_version(model_dir).iterdir()}

    before = files()

    def broken_export(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(train_module, "export_onnx", broken_export)
    with pytest.raises(RuntimeError, match="converter crashed"):
        train_model(schema, prepared_dir, model_dir)
    assert files() == before
    assert not list(model_dir.glob(".tmp-*"))


def test_evaluate_writes_metrics_and_a_confusion_matrix(
    prepared_dir: Path, model_dir: Path, card: ModelCard
) -> None:
    metrics, plot = evaluate_model(prepared_dir, model_dir)
    assert metrics == pytest.approx(card.metrics)
    assert plot == current_version(model_dir) / "confusion_matrix.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((current_version(model_dir) / "metrics.json").read_text()) == pytest.approx(
        metrics
    )
    assert json.loads((current_version(model_dir) / CARD_FILE).read_text())[
        "metrics"
    ] == pytest.approx(metrics)
