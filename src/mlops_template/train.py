"""Training: a scikit-learn Pipeline fitted on the prepared data, exported to ONNX with its card.

The whole feature pipeline (imputation, one-hot encoding, scaling, TF-IDF for text) is part of
the exported graph, so the ONNX file takes the raw feature columns and serving never re-implements a
transform. This is the only module that imports scikit-learn and skl2onnx.

Training is reproducible across processes: the same data, schema and seed give the same ONNX
file, byte for byte (BLAS and OpenMP run on one thread while fitting, so that sums are always
added in the same order).
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from ._fs import atomic_path, publish_or_explain
from .card import CARD_FILE, MODEL_FILE, DatasetInfo, ModelCard, input_names
from .contract import MISSING_CATEGORY
from .data import load_prepared, read_columns, to_model_inputs
from .drift import profile
from .errors import DataFileError
from .inference import OnnxModel
from .schema import TERM_PATTERN, DatasetSchema, LinearModel, RandomForestModel

__all__ = [
    "TARGET_OPSET",
    "build_pipeline",
    "evaluate_model",
    "export_onnx",
    "fit",
    "score",
    "train_model",
]

# Pinned so that the same data and seed give the same ONNX file, whatever skl2onnx's default.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# A text's terms (`schema.TERM_PATTERN`) in the graph: Python's `\w` (scikit-learn) and RE2's
# `[\p{L}\p{N}_]` (onnxruntime's Tokenizer) name the same characters, where RE2's own `\w` and
# `\b` are ASCII only: with them a word such as "café" would be cut differently in the served
# model than in training.
ONNX_TERM_PATTERN = r"[\p{L}\p{N}_][\p{L}\p{N}_]+"
# Lower-casing in the graph (StringNormalizer) with a locale every Linux image has: its default,
# en_US.UTF-8, is missing from slim images, and then the model does not load at all.
ONNX_LOCALE = "C.UTF-8"
_LIBRARIES = ("numpy", "onnx", "onnxruntime", "polars", "scikit-learn", "skl2onnx")


def _estimator(schema: DatasetSchema) -> Any:
    spec, seed = schema.model, schema.split.seed
    classify = schema.task == "classification"
    if isinstance(spec, LinearModel):
        if classify:
            return LogisticRegression(
                C=spec.C, class_weight=spec.class_weight, max_iter=5000, random_state=seed
            )
        return Ridge(alpha=spec.alpha)
    if isinstance(spec, RandomForestModel):
        forest = RandomForestClassifier if classify else RandomForestRegressor
        options: dict[str, Any] = {"class_weight": spec.class_weight} if classify else {}
        return forest(
            n_estimators=spec.n_estimators,
            max_depth=spec.max_depth,
            min_samples_leaf=spec.min_samples_leaf,
            random_state=seed,
            **options,
        )
    booster = GradientBoostingClassifier if classify else GradientBoostingRegressor
    return booster(
        n_estimators=spec.n_estimators,
        learning_rate=spec.learning_rate,
        max_depth=spec.max_depth,
        max_leaf_nodes=spec.max_leaf_nodes,
        random_state=seed,
    )


def build_pipeline(schema: DatasetSchema) -> Pipeline:
    """The model: preprocessing for each feature type, then the estimator `[model]` chooses.

    Columns are named by the ONNX graph's input names (`card.input_names`), so any header works.
    Trees get no scaling: they do not need it, and unscaled inputs keep the exported graph's
    decisions identical to scikit-learn's.
    """
    names = input_names(schema.features)
    numeric = [names[f.name] for f in schema.features if f.is_numeric or f.is_date]
    categorical = [f for f in schema.features if f.type == "category"]
    transformers: list[tuple[str, Any, Any]] = []
    if numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if isinstance(schema.model, LinearModel):
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        # Declared categories (plus the missing level) fix the one-hot layout, so it does not
        # depend on which categories the training split happens to contain.
        levels = [[*(f.categories or ()), MISSING_CATEGORY] for f in categorical]
        encoder = OneHotEncoder(categories=levels, handle_unknown="ignore", sparse_output=False)
        transformers.append(("categorical", encoder, [names[f.name] for f in categorical]))
    for index, feature in enumerate(f for f in schema.features if f.type == "text"):
        # One column by its name (not a list): the vectoriser takes a sequence of texts.
        words = TfidfVectorizer(
            token_pattern=TERM_PATTERN, max_features=feature.terms, dtype=np.float32
        )
        transformers.append((f"text{index}", words, names[feature.name]))
    return Pipeline(
        [("preprocess", ColumnTransformer(transformers)), ("model", _estimator(schema))]
    )


def _frame(inputs: dict[str, npt.NDArray[Any]]) -> pl.DataFrame:
    """The ONNX inputs as one frame, so scikit-learn sees exactly what the graph will see."""
    return pl.DataFrame({name: array.reshape(-1) for name, array in inputs.items()})


def export_onnx(pipeline: Pipeline, schema: DatasetSchema) -> bytes:
    """The fitted pipeline as ONNX bytes: one [n, 1] input per raw feature, no ZipMap."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    names = input_names(schema.features)
    types = [
        (names[f.name], StringTensorType([None, 1]) if f.is_string else FloatTensorType([None, 1]))
        for f in schema.features
    ]
    options: dict[int, dict[str, Any]] = {
        id(step): {"tokenexp": ONNX_TERM_PATTERN}
        for _, step, _ in pipeline.named_steps["preprocess"].transformers_
        if isinstance(step, TfidfVectorizer)
    }
    if schema.task == "classification":
        options[id(pipeline.steps[-1][1])] = {"zipmap": False}
    model = convert_sklearn(
        pipeline,
        name=f"{schema.name}_{schema.task}",
        initial_types=types,
        options=options or None,
        target_opset=TARGET_OPSET,
    )
    for node in model.graph.node:
        if node.op_type == "StringNormalizer":
            _set_attribute(node, "locale", ONNX_LOCALE)
    # skl2onnx lists the opsets it used in set order, which changes with Python's hash seed
    # from one process to the next: sorted, the same model gives the same bytes every time.
    imports = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in imports:
        model.opset_import.add(domain=domain, version=version)
    return bytes(model.SerializeToString())


def _set_attribute(node: Any, name: str, value: str) -> None:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            node.attribute.remove(attribute)
            break
    node.attribute.append(helper.make_attribute(name, value))


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


def fit(schema: DatasetSchema, train: pl.DataFrame) -> Pipeline:
    """Fit the pipeline on one thread of BLAS and OpenMP, so that every run gives the same model."""
    pipeline = build_pipeline(schema)
    inputs = to_model_inputs(train, schema.features, input_names(schema.features))
    with threadpool_limits(limits=1):
        pipeline.fit(_frame(inputs), train.get_column(schema.target.name).to_numpy())
    return pipeline


def train_model(schema: DatasetSchema, processed_dir: Path, model_dir: Path) -> ModelCard:
    """Fit on the training split, export to ONNX, score the ONNX model on the test split.

    `model.onnx` and `model.json` are published together in one atomic step
    (`model_dir/current`): a failed or killed run leaves the previous pair in place.
    """
    train, test, manifest = load_prepared(processed_dir, schema)
    target = schema.target.name
    pipeline = fit(schema, train)
    profiles = {c.spec.name: profile(c) for c in read_columns(train, schema.features)}
    onnx_bytes = export_onnx(pipeline, schema)

    digest = hashlib.sha256(onnx_bytes).hexdigest()
    classes = tuple(str(c) for c in pipeline.classes_) if schema.task == "classification" else None
    card = ModelCard(
        name=schema.name,
        version=digest[:12],
        task=schema.task,
        estimator=type(pipeline.steps[-1][1]).__name__,
        model=schema.model,
        target=schema.target,
        features=schema.features,
        inputs=input_names(schema.features),
        classes=classes,
        null_values=schema.null_values,
        profile={name: found for name, found in profiles.items() if found is not None},
        vocabulary=_vocabulary(pipeline, schema),
        example=_example(test.select(schema.feature_names)),
        metrics={},
        dataset=DatasetInfo(
            name=schema.name,
            source_sha256=manifest.source_sha256,
            rows_train=train.height,
            rows_test=test.height,
            group=schema.split.group,
        ),
        onnx_sha256=digest,
        onnx_opset=TARGET_OPSET[""],
        library_versions={"python": platform.python_version()}
        | {name: metadata.version(name) for name in _LIBRARIES},
        created_at=datetime.now(UTC).replace(microsecond=0),
    )

    def write(folder: Path) -> None:
        nonlocal card
        (folder / MODEL_FILE).write_bytes(onnx_bytes)
        # The held-out metrics are those of the exported artefact, the thing that is served.
        model = OnnxModel(_session(folder / MODEL_FILE), card, folder / MODEL_FILE)
        card = card.model_copy(update={"metrics": _evaluate(model, test, target)[0]})
        (folder / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")

    publish_or_explain(model_dir, write, "the model", "MODEL_DIR")
    return card


def _vocabulary(pipeline: Pipeline, schema: DatasetSchema) -> dict[str, tuple[str, ...]]:
    """Each text feature's terms, as its fitted vectoriser kept them (sorted)."""
    steps = pipeline.named_steps["preprocess"].named_transformers_
    texts = [f.name for f in schema.features if f.type == "text"]
    return {name: tuple(sorted(steps[f"text{i}"].vocabulary_)) for i, name in enumerate(texts)}


def _example(features: pl.DataFrame) -> dict[str, float | int | str | None]:
    """The first complete row of the test split: a realistic request for docs and smoke tests.

    Values keep their type (an integer feature's example is an integer, a date its ISO 8601
    text), so the example is a valid request as it stands.
    """
    complete = features.drop_nulls()
    row = (complete if complete.height else features).row(0, named=True)
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()}


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _evaluate(
    model: OnnxModel, test: pl.DataFrame, target: str
) -> tuple[dict[str, float], npt.NDArray[Any], npt.NDArray[Any]]:
    prediction = model.run(to_model_inputs(test, model.card.features, model.card.inputs))
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
    _, test, manifest = load_prepared(processed_dir)
    if manifest.source_sha256 != model.card.dataset.source_sha256:
        raise DataFileError(
            f"{processed_dir}: the prepared data ({manifest.dataset}) is not the data the model "
            f"in {model_dir} was trained on",
            hint="run `make train` to train on the prepared data, then evaluate",
        )
    metrics, truth, predicted = _evaluate(model, test, model.card.target.name)
    model_dir = model.path.parent
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
