"""Inference with onnxruntime: load a model once, check inputs, predict a batch.

This module never imports scikit-learn or the training code: the ONNX file and its model card
are the whole contract, so the serving image needs neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ._fs import sha256_file
from .card import CARD_FILE, MISSING_CATEGORY, MODEL_FILE, ModelCard, load_card
from .errors import (
    InputValidationError,
    Issue,
    MlopsTemplateError,
    ModelIntegrityError,
    ModelNotFoundError,
)
from .schema import ColumnSpec

__all__ = ["ModelOutputError", "OnnxModel", "Prediction"]

Feed = dict[str, npt.NDArray[Any]]
_ONNX_TYPES = {"float": "tensor(float)", "integer": "tensor(float)", "category": "tensor(string)"}
_ROWS_SHOWN = 5
_SMALL = 256


class ModelOutputError(MlopsTemplateError):
    """The model produced something that is not a valid prediction (e.g. NaN); a model bug."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """A batch's predictions: labels and class probabilities, or regression values."""

    labels: npt.NDArray[np.object_] | None = None
    probabilities: npt.NDArray[np.float32] | None = None
    values: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        out = self.values if self.values is not None else self.labels
        return 0 if out is None else len(out)


class OnnxModel:
    """An ONNX model and its card; `predict` is safe to call from several threads at once."""

    def __init__(self, session: ort.InferenceSession, card: ModelCard, path: Path) -> None:
        self.card = card
        self.path = path
        self._session = session
        self._outputs = [o.name for o in session.get_outputs()]
        self._check_signature()

    @classmethod
    def load(cls, model_dir: Path, *, threads: int = 1) -> OnnxModel:
        """Load `model.onnx` and `model.json` from `model_dir`, refusing a file the card disowns.

        Args:
            model_dir: folder holding the two files that training writes.
            threads: onnxruntime intra-op threads; one per serving worker is fastest.
        """
        path = model_dir / MODEL_FILE
        card = load_card(model_dir / CARD_FILE)
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: model not found")
        digest = sha256_file(path)
        if digest != card.onnx_sha256:
            raise ModelIntegrityError(
                f"{path}: sha256 {digest[:12]}… does not match the model card's "
                f"{card.onnx_sha256[:12]}… (truncated, replaced or tampered with)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelIntegrityError(f"{path}: onnxruntime cannot load it: {exc}") from None
        return cls(session, card, path)

    def _check_signature(self) -> None:
        found = {i.name: i.type for i in self._session.get_inputs()}
        expected = {f.name: _ONNX_TYPES[f.type] for f in self.card.features}
        if found != expected:
            raise ModelIntegrityError(
                f"{self.path}: the model's inputs {found} differ from the card's {expected}"
            )

    def encode(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> Feed:
        """Turn checked columns (None for a missing value) into the ONNX graph's inputs."""
        feed: Feed = {}
        for spec in self.card.features:
            values = columns[spec.name]
            if spec.type == "category":
                array = np.array(
                    [MISSING_CATEGORY if v is None else v for v in values], dtype=object
                )
            else:
                array = np.asarray(values, dtype=np.float32)  # None becomes NaN: imputed
            feed[spec.name] = array.reshape(-1, 1)
        return feed

    def check(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> Feed:
        """Check columns against the card's features and encode them; raise on any problem.

        Every problem is reported at once, by column and 0-based row index: a missing or extra
        column, a length mismatch, a missing value where the card forbids one, a non-number,
        NaN or infinity, a number out of range, an unknown category.
        """
        names = self.card.feature_names
        issues = [
            Issue(n, "missing; the model needs this feature") for n in names if n not in columns
        ]
        issues += [
            Issue(n, f"not a model feature (features: {', '.join(names)})")
            for n in columns
            if n not in names
        ]
        lengths = {len(v) for v in columns.values()}
        if not issues and len(lengths) > 1:
            issues.append(Issue("*", f"columns have different lengths: {sorted(lengths)}"))
        if not issues and lengths == {0}:
            issues.append(Issue("*", "no rows to predict"))
        if not issues:
            for spec in self.card.features:
                issues += _check_column(spec, columns[spec.name])
        if issues:
            raise InputValidationError("inputs", issues)
        return self.encode(columns)

    def run(self, feed: Feed) -> Prediction:
        """Run the model on encoded inputs (from `encode` or `check`)."""
        outputs = self._session.run(self._outputs, feed)
        if self.card.task == "regression":
            values = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
            _require_finite(values)
            return Prediction(values=values)
        labels, probabilities = outputs[0], np.asarray(outputs[1], dtype=np.float32)
        _require_finite(probabilities)
        return Prediction(labels=np.asarray(labels, dtype=object), probabilities=probabilities)

    def predict(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> Prediction:
        """Check, encode and predict a batch given as columns keyed by feature name."""
        return self.run(self.check(columns))


def _require_finite(array: npt.NDArray[np.float32]) -> None:
    # On a few values Python is faster than a numpy ufunc on onnxruntime's fresh output.
    if array.size <= _SMALL:
        finite = all(map(math.isfinite, array.ravel().tolist()))
    else:
        finite = bool(np.isfinite(array).all())
    if not finite:
        raise ModelOutputError("the model produced a non-finite output (NaN or infinity)")


def _check_column(spec: ColumnSpec, values: Sequence[Any] | npt.NDArray[Any]) -> list[Issue]:
    problems: dict[str, list[int]] = {}

    def add(message: str, row: int) -> None:
        problems.setdefault(message, []).append(row)

    for row, value in enumerate(values):
        if value is None:
            if not spec.nullable:
                add("missing value, but the feature is not nullable", row)
        elif spec.type == "category":
            if not isinstance(value, str):
                add(f"expected a category label (string), got {type(value).__name__}", row)
            elif value not in (spec.categories or ()):
                add(f"unknown category; expected one of: {', '.join(spec.categories or ())}", row)
        elif isinstance(value, bool) or not isinstance(value, int | float | np.number):
            add(f"expected a number, got {type(value).__name__}", row)
        elif not math.isfinite(value):
            add("not a finite number", row)
        elif spec.type == "integer" and value != math.floor(value):
            add("expected a whole number", row)
        elif spec.min is not None and value < spec.min:
            add(f"below the minimum {spec.min:g}", row)
        elif spec.max is not None and value > spec.max:
            add(f"above the maximum {spec.max:g}", row)
    return [
        Issue(spec.name, message, rows[:_ROWS_SHOWN], "row", len(rows))
        for message, rows in problems.items()
    ]
