"""Training: a scikit-learn Pipeline fitted on the prepared data, exported to ONNX with its card.

The whole feature pipeline (imputation, one-hot encoding, scaling) is part of the exported
graph, so the ONNX file takes the raw feature columns and serving never re-implements a
transform. This is the only module that imports scikit-learn and skl2onnx.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ._fs import atomic_path
from .card import CARD_FILE, MISSING_CATEGORY, MODEL_FILE, DatasetInfo, ModelCard
from .data import MANIFEST_FILE, TEST_FILE, TRAIN_FILE, PrepareManifest, to_model_inputs
from .errors import DataFileError
from .inference import OnnxModel
from .schema import DatasetSchema

__all__ = [
    "TARGET_OPSET",
    "build_pipeline",
    "evaluate_model",
    "export_onnx",
    "score",
    "train_model",
]

# Pinned so that the same data and seed give the same ONNX file, whatever skl2onnx's default.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
_LIBRARIES = ("numpy", "onnx", "onnxruntime", "polars", "scikit-learn", "skl2onnx")


def build_pipeline(schema: DatasetSchema) -> Pipeline:
    """The model: preprocessing for each feature type, then a linear estimator."""
    numeric = [f.name for f in schema.features if f.is_numeric]
    categorical = [f for f in schema.features if not f.is_numeric]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        transformers.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        # Declared categories (plus the missing level) fix the one-hot layout, so it does not
        # depend on which categories the training split happens to contain.
        levels = [[*(f.categories or ()), MISSING_CATEGORY] for f in categorical]
        encoder = OneHotEncoder(categories=levels, handle_unknown="ignore")
        transformers.append(("categorical", encoder, [f.name for f in categorical]))
    estimator: Any
    if schema.task == "classification":
        estimator = LogisticRegression(max_iter=2000, random_state=schema.split.seed)
    else:
        estimator = Ridge(alpha=1.0)
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("model", estimator)])


def _frame(inputs: dict[str, npt.NDArray[Any]]) -> pl.DataFrame:
    """The ONNX inputs as one frame, so scikit-learn sees exactly what the graph will see."""
    return pl.DataFrame({name: array.reshape(-1) for name, array in inputs.items()})


def export_onnx(pipeline: Pipeline, schema: DatasetSchema) -> bytes:
    """The fitted pipeline as ONNX bytes: one [n, 1] input per raw feature, no ZipMap."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    types = [
        (f.name, FloatTensorType([None, 1]) if f.is_numeric else StringTensorType([None, 1]))
        for f in schema.features
    ]
    options = (
        {id(pipeline.steps[-1][1]): {"zipmap": False}} if schema.task == "classification" else None
    )
    model = convert_sklearn(
        pipeline,
        name=f"{schema.name}_{schema.task}",
        initial_types=types,
        options=options,
        target_opset=TARGET_OPSET,
    )
    return bytes(model.SerializeToString())


def score(task: str, truth: npt.NDArray[Any], predicted: npt.NDArray[Any]) -> dict[str, float]:
    """Held-out metrics: accuracy and macro F1, or RMSE, MAE and R²."""
    from sklearn import metrics

    if task == "classification":
        return {
            "accuracy": float(metrics.accuracy_score(truth, predicted)),
            "f1_macro": float(metrics.f1_score(truth, predicted, average="macro")),
        }
    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(truth, predicted))),
        "mae": float(metrics.mean_absolute_error(truth, predicted)),
        "r2": float(metrics.r2_score(truth, predicted)),
    }


def _read_prepared(processed_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, PrepareManifest]:
    paths = [processed_dir / name for name in (TRAIN_FILE, TEST_FILE, MANIFEST_FILE)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataFileError(
            f"{missing[0]}: prepared data not found",
            hint="run `make prepare` first",
        )
    manifest = PrepareManifest.model_validate_json(paths[2].read_text(encoding="utf-8"))
    return pl.read_parquet(paths[0]), pl.read_parquet(paths[1]), manifest


def train_model(schema: DatasetSchema, processed_dir: Path, model_dir: Path) -> ModelCard:
    """Fit on the training split, export to ONNX, score the ONNX model on the test split.

    `model.onnx` and `model.json` are written together, atomically: a failure leaves the
    previous pair in place.
    """
    train, test, manifest = _read_prepared(processed_dir)
    target = schema.target.name
    pipeline = build_pipeline(schema)
    pipeline.fit(
        _frame(to_model_inputs(train, schema.features)), train.get_column(target).to_numpy()
    )
    onnx_bytes = export_onnx(pipeline, schema)

    digest = hashlib.sha256(onnx_bytes).hexdigest()
    classes = tuple(str(c) for c in pipeline.classes_) if schema.task == "classification" else None
    card = ModelCard(
        name=schema.name,
        version=digest[:12],
        task=schema.task,
        estimator=type(pipeline.steps[-1][1]).__name__,
        target=schema.target,
        features=schema.features,
        classes=classes,
        null_values=schema.null_values,
        example=_example(test.select(schema.feature_names)),
        metrics={},
        dataset=DatasetInfo(
            name=schema.name,
            source_sha256=manifest.source_sha256,
            rows_train=train.height,
            rows_test=test.height,
        ),
        onnx_sha256=digest,
        onnx_opset=TARGET_OPSET[""],
        library_versions={"python": platform.python_version()}
        | {name: metadata.version(name) for name in _LIBRARIES},
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    with contextlib.ExitStack() as stack:
        model_tmp = stack.enter_context(atomic_path(model_dir / MODEL_FILE))
        model_tmp.write_bytes(onnx_bytes)
        # The held-out metrics are those of the exported artefact, the thing that is served.
        model = OnnxModel(_session(model_tmp), card, model_tmp)
        card = card.model_copy(update={"metrics": _evaluate(model, test, target)[0]})
        card_tmp = stack.enter_context(atomic_path(model_dir / CARD_FILE))
        card_tmp.write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return card


def _example(features: pl.DataFrame) -> dict[str, float | str | None]:
    """The first complete row of the test split: a realistic request for docs and smoke tests."""
    complete = features.drop_nulls()
    row = (complete if complete.height else features).row(0, named=True)
    return {k: float(v) if isinstance(v, int | float) else v for k, v in row.items()}


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _evaluate(
    model: OnnxModel, test: pl.DataFrame, target: str
) -> tuple[dict[str, float], npt.NDArray[Any], npt.NDArray[Any]]:
    prediction = model.run(to_model_inputs(test, model.card.features))
    predicted = prediction.labels if prediction.labels is not None else prediction.values
    assert predicted is not None
    truth = test.get_column(target).to_numpy()
    return score(model.card.task, truth, predicted), truth, predicted


def evaluate_model(processed_dir: Path, model_dir: Path) -> tuple[dict[str, float], Path]:
    """Score the trained ONNX model on the test split and plot its errors next to the card.

    Returns the metrics and the plot's path: a confusion matrix for classification, residuals
    against predictions for regression.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    model = OnnxModel.load(model_dir)
    _, test, _ = _read_prepared(processed_dir)
    metrics, truth, predicted = _evaluate(model, test, model.card.target.name)
    figure, axes = plt.subplots(figsize=(6, 5), dpi=100)
    if model.card.task == "classification":
        ConfusionMatrixDisplay.from_predictions(
            truth, predicted, labels=list(model.card.classes or ()), ax=axes, colorbar=False
        )
        axes.set_title(f"{model.card.name}: confusion matrix (test split)")
        path = model_dir / "confusion_matrix.png"
    else:
        axes.scatter(predicted, truth - predicted, s=12, alpha=0.7)
        axes.axhline(0.0, color="grey", linewidth=1)
        axes.set_xlabel(f"predicted {model.card.target.name}")
        axes.set_ylabel("residual (actual - predicted)")
        axes.set_title(f"{model.card.name}: residuals (test split)")
        path = model_dir / "residuals.png"
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(figure)
    metrics_path = model_dir / "metrics.json"
    with atomic_path(metrics_path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics, path
