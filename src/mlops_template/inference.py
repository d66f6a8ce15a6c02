"""Inference with onnxruntime: load a model once, check inputs, predict a batch.

This module never imports scikit-learn or the training code: the ONNX file and its model card
are the whole contract, so the serving image needs neither.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from . import contract
from ._fs import current_version
from .card import CARD_FILE, MODEL_FILE, ModelCard, load_card
from .errors import (
    InputValidationError,
    Issue,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelOutputError,
)
from .schema import TERM_PATTERN

__all__ = ["ModelOutputError", "OnnxModel", "Prediction"]

Feed = dict[str, npt.NDArray[Any]]
_ONNX_TYPES = {
    "float": "tensor(float)",
    "integer": "tensor(float)",
    "category": "tensor(string)",
    "text": "tensor(string)",
    "date": "tensor(float)",
    "datetime": "tensor(float)",
}
_SMALL = 256
_TERM = re.compile(TERM_PATTERN)
# Rows per onnxruntime call. Larger batches are scored in slices of this size, so that a
# model's intermediate tensors stay in the CPU's caches (`make bench` measures it).
SLICE = 4096


@dataclass(frozen=True, slots=True)
class Prediction:
    """A batch's predictions: labels and class probabilities, or regression values.

    `classes` holds each label as its index in the card's classes, for writers that store
    labels as codes.
    """

    labels: npt.NDArray[np.object_] | None = None
    probabilities: npt.NDArray[np.float32] | None = None
    values: npt.NDArray[np.float32] | None = None
    classes: npt.NDArray[np.intp] | None = None

    def __len__(self) -> int:
        out = self.values if self.values is not None else self.probabilities
        return 0 if out is None else len(out)


class OnnxModel:
    """An ONNX model and its card; `predict` is safe to call from several threads at once."""

    def __init__(
        self, session: ort.InferenceSession, card: ModelCard, path: Path, file: bytes | None = None
    ) -> None:
        self.card = card
        self.path = path
        self.file = file  # the ONNX file's bytes as loaded, when `load` was asked to keep them
        self.session = session  # onnxruntime's own: for callers that time the bare graph
        self._outputs = [o.name for o in session.get_outputs()]
        # What scoring asks the graph for: a regressor's values, or a classifier's
        # probabilities (never its label strings: see `run`).
        self.scored_outputs = self._outputs[:1] if card.task == "regression" else self._outputs[1:]
        self._labels = np.array(card.classes or (), dtype=object)
        self._terms = {name: frozenset(terms) for name, terms in card.vocabulary.items()}
        self._check_signature()

    @classmethod
    def load(cls, model_dir: Path, *, threads: int = 1, keep_file: bool = False) -> OnnxModel:
        """Load `model.onnx` and `model.json` from `model_dir`, refusing a file the card disowns.

        The file is read once: the bytes whose hash is checked are the bytes onnxruntime loads.

        Args:
            model_dir: folder holding the two files that training writes.
            threads: onnxruntime intra-op threads; one per serving worker is fastest.
            keep_file: keep those bytes as `file` (the server can share them at /model.onnx).
        """
        try:
            model_dir = current_version(model_dir)  # both files from one published set
            path = model_dir / MODEL_FILE
            card = load_card(model_dir / CARD_FILE)
            if not path.is_file():
                raise ModelNotFoundError(f"{path}: model not found")
            data = path.read_bytes()
        except PermissionError as exc:
            raise ModelNotFoundError(
                f"{exc.filename}: cannot read the model: {exc.strerror}",
                hint="check the permissions of the model folder and its files",
            ) from None
        digest = hashlib.sha256(data).hexdigest()
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
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelIntegrityError(f"{path}: onnxruntime cannot load it: {exc}") from None
        model = cls(session, card, path, data if keep_file else None)
        try:
            model.check_outputs()
        except ModelOutputError as exc:
            raise ModelIntegrityError(
                f"{path}: the model's outputs break its card: {exc}"
            ) from None
        return model

    def _check_signature(self) -> None:
        found = {i.name: i.type for i in self.session.get_inputs()}
        expected = {self.card.inputs[f.name]: _ONNX_TYPES[f.type] for f in self.card.features}
        if found != expected:
            raise ModelIntegrityError(
                f"{self.path}: the model's inputs {found} differ from the card's {expected}"
            )
        found_outputs = [(o.name, o.type, o.shape[1:]) for o in self.session.get_outputs()]
        expected_outputs = _expected_outputs(self.card)
        if len(found_outputs) != len(expected_outputs) or not all(
            name == want[0] and kind in want[1] and _width_matches(shape, want[2])
            for (name, kind, shape), want in zip(found_outputs, expected_outputs, strict=False)
        ):
            shown = ", ".join(f"{n} {t}{['rows', *s]}" for n, t, s in found_outputs)
            wanted = ", ".join(f"{n} {' or '.join(t)}[rows, {w}]" for n, t, w in expected_outputs)
            raise ModelIntegrityError(
                f"{self.path}: the model's outputs ({shown}) are not what a {self.card.task} "
                f"model of this project gives ({wanted}), in that order"
            )

    def check_outputs(self) -> None:
        """Predict the card's example and make sure the answer is one the card allows.

        A model whose labels or probability width differ from its card is refused here, at
        load, instead of answering 500 to every request later.
        """
        example = self.card.example
        columns = {
            f.name: [example.get(f.name) if f.name in example else None] for f in self.card.features
        }
        feed = self.encode_raw(columns)
        prediction = self.run(feed)
        if self.card.task == "classification":
            probabilities = prediction.probabilities
            assert probabilities is not None
            total = float(probabilities.sum())
            if probabilities.min() < 0 or probabilities.max() > 1 or abs(total - 1) > 1e-4:
                raise ModelOutputError(
                    f"its probabilities {probabilities.round(4).tolist()} for the card's example "
                    "are not each in [0, 1] with a sum of 1"
                )
            # `run` reads the label off the probabilities; the graph's own label must agree.
            graph_label = np.asarray(self.session.run(self._outputs[:1], feed)[0]).reshape(-1)
            assert prediction.labels is not None
            if graph_label.tolist() != prediction.labels.tolist():
                raise ModelOutputError(
                    f"the model's label {graph_label.tolist()!r} is not its most probable class "
                    f"{prediction.labels.tolist()!r} in the card's class order"
                )

    def unknown_texts(self, columns: Sequence[contract.Column]) -> dict[str, list[int]]:
        """For each text feature, the rows whose text holds no term the model knows: the model
        scores them on the other features alone, which says little (for a text alone, the
        classes' prior)."""
        found = {}
        for column in columns:
            terms = self._terms.get(column.spec.name)
            if terms is not None and column.texts is not None:
                found[column.spec.name] = [
                    row
                    for row, text in enumerate(column.texts)
                    if terms.isdisjoint(_TERM.findall(text.lower()))
                ]
        return found

    def encode_raw(self, columns: Mapping[str, Sequence[Any]]) -> Feed:
        """Values taken as they are (no checks; missing where None): for smoke tests."""
        read = [contract.read_values(spec, list(columns[spec.name])) for spec in self.card.features]
        return self.feed(read)

    def feed(self, columns: Sequence[contract.Column]) -> Feed:
        """Checked contract columns (in the card's feature order) as the ONNX graph's inputs."""
        inputs = self.card.inputs
        return {inputs[c.spec.name]: contract.encode(c) for c in columns}

    def read(
        self,
        columns: Mapping[str, Sequence[Any]],
        *,
        row_label: str = "row",
        nan_is_missing: bool = False,
    ) -> list[contract.Column]:
        """Check JSON-like columns (None for a missing value) against the card; `feed` encodes
        what it returns.

        Every problem is reported at once, by column and 0-based row: a missing or extra
        column, a length mismatch, and whatever the data contract finds.
        """
        names = self.card.feature_names
        issues = [
            Issue(n, "missing; the model needs this feature") for n in names if n not in columns
        ]
        issues += [
            Issue(n[:60], f"not a model feature (features: {', '.join(names)})")
            for n in columns
            if n not in names
        ]
        lengths = {len(v) for v in columns.values()}
        if not issues and len(lengths) > 1:
            issues.append(Issue("*", f"columns have different lengths: {sorted(lengths)}"))
        if not issues and lengths == {0}:
            issues.append(Issue("*", "no rows to predict"))
        if issues:
            raise InputValidationError("inputs", issues)
        read = [
            contract.read_values(spec, list(columns[spec.name]), nan_is_missing)
            for spec in self.card.features
        ]
        faults = contract.check(read)
        if faults:
            found = {spec.name: columns[spec.name] for spec in self.card.features}
            raise InputValidationError(
                "inputs",
                contract.issues(
                    faults,
                    lambda name, rows: contract.describe_values(found[name], rows),
                    row_label=row_label,
                ),
            )
        return read

    def check(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> Feed:
        """Check columns against the card's features and encode them; raise on any problem."""
        return self.feed(self.read({k: list(v) for k, v in columns.items()}))

    def run(self, feed: Feed, *, labels: bool = True) -> Prediction:
        """Run the model on encoded inputs (from `check` or `feed`); check what comes out.

        `labels=False` leaves a classifier's labels out (`classes` holds them as indices).
        """
        if self.card.task == "regression":
            values = np.asarray(self.scores(feed), np.float32).reshape(-1)
            _require_finite(values)
            return Prediction(values=values)
        # Only the probabilities: the label is their most probable class, in the card's order,
        # as scikit-learn's `predict` has it (checked against the graph's own label at load),
        # which spares onnxruntime a string per row.
        probabilities = np.asarray(self.scores(feed), np.float32)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self._labels):
            raise ModelOutputError(
                f"the model gives {probabilities.shape[-1]} probabilities per row; "
                f"its card lists {len(self._labels)} classes"
            )
        _require_finite(probabilities)
        best = probabilities.argmax(axis=1)
        return Prediction(
            labels=self._labels[best] if labels else None,
            probabilities=probabilities,
            classes=best,
        )

    def scores(self, feed: Feed) -> npt.NDArray[Any]:
        """The graph's `scored_outputs`, unchecked, in calls of at most `SLICE` rows."""
        outputs, rows = self.scored_outputs, len(next(iter(feed.values())))
        if rows <= SLICE:
            return np.asarray(self.session.run(outputs, feed)[0])
        return np.concatenate(
            [
                self.session.run(outputs, {k: v[i : i + SLICE] for k, v in feed.items()})[0]
                for i in range(0, rows, SLICE)
            ]
        )

    def predict(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> Prediction:
        """Check, encode and predict a batch given as columns keyed by feature name."""
        return self.run(self.check(columns))


def _expected_outputs(card: ModelCard) -> list[tuple[str, tuple[str, ...], int]]:
    """The outputs skl2onnx exports for this project's models: name, types, columns."""
    if card.task == "regression":
        return [("variable", ("tensor(float)",), 1)]
    return [
        ("label", ("tensor(string)", "tensor(int64)"), 1),
        ("probabilities", ("tensor(float)",), len(card.classes or ())),
    ]


def _width_matches(shape: list[Any], width: int) -> bool:
    """A per-row shape of [] or [1] for one column, [width] otherwise (any when symbolic)."""
    if not shape:
        return width == 1
    return len(shape) == 1 and (not isinstance(shape[0], int) or shape[0] == width)


def _require_finite(array: npt.NDArray[np.float32]) -> None:
    # On a few values Python is faster than a numpy ufunc on onnxruntime's fresh output.
    if array.size <= _SMALL:
        finite = all(map(math.isfinite, array.ravel().tolist()))
    else:
        finite = bool(np.isfinite(array).all())
    if not finite:
        raise ModelOutputError("the model produced a non-finite output (NaN or infinity)")
