from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, MODEL_FILE
from mlops_template.data import TEST_FILE, to_model_inputs
from mlops_template.errors import (
    InputValidationError,
    ModelIntegrityError,
    ModelNotFoundError,
)
from mlops_template.inference import OnnxModel

from .conftest import GENTOO

ROW = GENTOO


def columns(*rows: dict[str, object]) -> dict[str, list[object]]:
    return {name: [row[name] for row in rows] for name in rows[0]}


@pytest.fixture(scope="module")
def model(trained_dir: Path) -> OnnxModel:
    return OnnxModel.load(trained_dir)


def test_predicts_labels_and_probabilities(model: OnnxModel) -> None:
    prediction = model.predict(
        columns(
            ROW,
            {
                **ROW,
                "island": "Torgersen",
                "bill_length_mm": 38.0,
                "bill_depth_mm": 19.0,
                "flipper_length_mm": 185.0,
                "body_mass_g": 3600.0,
            },
        )
    )
    assert prediction.labels is not None
    assert prediction.probabilities is not None
    assert prediction.labels.tolist() == ["Gentoo", "Adelie"]
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_missing_values_are_imputed_where_the_schema_allows(model: OnnxModel) -> None:
    prediction = model.predict(columns({**ROW, "sex": None, "bill_depth_mm": None}))
    assert prediction.labels is not None
    assert prediction.labels.tolist() == ["Gentoo"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"island": None},
            "column 'island': missing value, but the schema says nullable = false (row 0)",
        ),
        (
            {"island": "Mars"},
            "column 'island': unknown category; expected one of: Biscoe, Dream, Torgersen; "
            "found 'Mars' (row 0)",
        ),
        ({"island": 3}, "column 'island': expected a category label; found 3 (row 0)"),
        ({"bill_length_mm": "47.5"}, "column 'bill_length_mm': expected a number; found '47.5'"),
        ({"bill_length_mm": True}, "column 'bill_length_mm': expected a number; found True"),
        ({"bill_length_mm": float("nan")}, "column 'bill_length_mm': not a finite number"),
        ({"body_mass_g": float("inf")}, "column 'body_mass_g': not a finite number"),
        ({"body_mass_g": 1e6}, "column 'body_mass_g': above the maximum 7000"),
        ({"flipper_length_mm": -1.0}, "column 'flipper_length_mm': below the minimum 150"),
    ],
)
def test_bad_values_name_the_row_and_column(
    model: OnnxModel, change: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InputValidationError) as caught:
        model.predict(columns({**ROW, **change}))
    assert fragment in str(caught.value)


def test_bad_rows_are_reported_by_index(model: OnnxModel) -> None:
    rows = [ROW, ROW, {**ROW, "island": "Mars"}, ROW, {**ROW, "island": "Mars"}]
    with pytest.raises(InputValidationError, match=r"unknown category.*\(rows 2, 4\)"):
        model.predict(columns(*rows))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {k: v for k, v in columns(ROW).items() if k != "sex"},
            "column 'sex': missing; the model needs this feature",
        ),
        ({**columns(ROW), "year": [2007]}, "column 'year': not a model feature"),
        ({**columns(ROW), "sex": ["male", "female"]}, "columns have different lengths: [1, 2]"),
        ({k: [] for k in ROW}, "no rows to predict"),
    ],
)
def test_bad_column_sets_are_rejected(
    model: OnnxModel, data: dict[str, list[object]], fragment: str
) -> None:
    with pytest.raises(InputValidationError) as caught:
        model.predict(data)
    assert fragment in str(caught.value)


def test_missing_model_says_to_train(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model card not found") as caught:
        OnnxModel.load(tmp_path)
    assert "make train" in caught.value.hint
    (current_version(model_dir) / MODEL_FILE).unlink()
    with pytest.raises(ModelNotFoundError, match=r"model\.onnx: model not found"):
        OnnxModel.load(model_dir)


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_a_model_that_does_not_match_its_card_is_refused(model_dir: Path, damage: str) -> None:
    path = current_version(model_dir) / MODEL_FILE
    data = path.read_bytes()
    path.write_bytes(
        data[: len(data) // 2] if damage == "truncate" else data[:-1] + bytes([data[-1] ^ 1])
    )
    with pytest.raises(ModelIntegrityError, match="does not match the model card"):
        OnnxModel.load(model_dir)


def test_a_card_whose_features_differ_from_the_model_is_refused(model_dir: Path) -> None:
    card = json.loads((current_version(model_dir) / CARD_FILE).read_text())
    card["features"][0]["name"] = "archipelago"
    card["inputs"] = {
        "archipelago": "archipelago",
        **{k: v for k, v in card["inputs"].items() if k != "island"},
    }
    (current_version(model_dir) / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="differ from the card's"):
        OnnxModel.load(model_dir)


def test_a_garbage_card_is_refused_with_the_field_named(model_dir: Path) -> None:
    card = json.loads((current_version(model_dir) / CARD_FILE).read_text())
    del card["onnx_sha256"]
    (current_version(model_dir) / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="onnx_sha256: Field required"):
        OnnxModel.load(model_dir)


def test_concurrent_predictions_from_one_session_are_all_right(
    model: OnnxModel, prepared_dir: Path
) -> None:
    test = pl.read_parquet(current_version(prepared_dir) / TEST_FILE)
    feed = to_model_inputs(test, model.card.features, model.card.inputs)
    expected = model.run(feed)
    rows = [{name: array[i : i + 1] for name, array in feed.items()} for i in range(test.height)]

    def one(i: int) -> bool:
        got = model.run(rows[i % len(rows)])
        assert got.labels is not None
        assert expected.labels is not None
        return bool(got.labels[0] == expected.labels[i % len(rows)])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(2000)))
    assert all(results)
    assert len(results) == 2000


def test_a_batch_past_the_slice_size_scores_as_one_call_would(
    model: OnnxModel, prepared_dir: Path
) -> None:
    """Large batches go to onnxruntime in slices of `SLICE` rows; the rows, their order and
    their scores are those of a single call, the last, partial slice included."""
    from mlops_template.inference import SLICE

    test = pl.read_parquet(current_version(prepared_dir) / TEST_FILE)
    rows = 2 * SLICE + 3
    repeats = -(-rows // test.height)
    feed = to_model_inputs(test, model.card.features, model.card.inputs)
    feed = {name: np.tile(array, (repeats, 1))[:rows] for name, array in feed.items()}
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    whole = session.run(model.scored_outputs, feed)[0]  # one call, for reference
    sliced = model.run(feed)
    assert sliced.probabilities is not None
    assert sliced.labels is not None
    assert sliced.probabilities.shape == (rows, len(model.card.classes or ()))
    np.testing.assert_allclose(sliced.probabilities, whole, rtol=1e-6, atol=1e-7)
    classes = list(model.card.classes or ())
    assert sliced.labels.tolist() == [classes[i] for i in whole.argmax(axis=1)]
    bare = model.run(feed, labels=False)
    assert bare.labels is None
    assert len(bare) == rows
    np.testing.assert_array_equal(bare.classes, sliced.classes)


def test_inference_never_imports_scikit_learn(trained_dir: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from mlops_template.inference import OnnxModel
m = OnnxModel.load(Path({str(trained_dir)!r}))
first = {{f.name: f.categories[0] if f.categories else f.min for f in m.card.features}}
m.predict({{name: [value] for name, value in first.items()}})
roots = {{'sklearn', 'skl2onnx', 'mlops_template'}}
print(sorted(n for n in sys.modules if n.split('.')[0] in roots))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.replace("'", '"'))
    assert "mlops_template.inference" in loaded
    training = ("sklearn", "skl2onnx", "mlops_template.train")
    assert not [n for n in loaded if n.startswith(training)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda classes: classes[:-1], "probabilities tensor(float)[rows, 2]"),
        (lambda classes: classes[::-1], "is not its most probable class"),
    ],
    ids=["a class missing from the card", "the card's classes in another order"],
)
def test_a_model_whose_outputs_break_its_card_is_refused_at_load(
    model_dir: Path, change: Any, message: str
) -> None:
    path = current_version(model_dir) / CARD_FILE
    card = json.loads(path.read_text())
    card["classes"] = change(card["classes"])
    path.write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError) as caught:
        OnnxModel.load(model_dir)
    assert message in str(caught.value)


def _rewire(graph: Any, change: str) -> None:
    """Change a trained classifier's ONNX outputs the way a hand-edited or foreign export might."""
    from onnx import helper

    outputs = list(graph.output)
    if change == "reordered":
        del graph.output[:]
        graph.output.extend(outputs[::-1])
        return
    if change == "renamed":
        graph.node.append(helper.make_node("Identity", ["probabilities"], ["probs"]))
        graph.output[1].name = "probs"
        return
    for node in graph.node:  # the graph's probabilities become an inner tensor
        node.output[:] = ["raw" if o == "probabilities" else o for o in node.output]
    if change == "scaled by 5":
        five = helper.make_tensor("five", 1, [], [5.0])  # FLOAT
        graph.initializer.append(five)
        graph.node.append(helper.make_node("Mul", ["raw", "five"], ["probabilities"]))
    else:
        graph.node.append(helper.make_node("Neg", ["raw"], ["probabilities"]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("reordered", "are not what a classification model of this project gives"),
        ("renamed", "are not what a classification model of this project gives"),
        ("scaled by 5", "are not each in [0, 1] with a sum of 1"),
        ("negated", "are not each in [0, 1] with a sum of 1"),
    ],
)
def test_a_model_whose_outputs_differ_from_the_projects_is_refused_at_load(
    model_dir: Path, change: str, message: str
) -> None:
    """Outputs in another order or under another name, and probabilities that are not
    probabilities, stop the load with one error naming the file (the card matches the file, so
    only the outputs are wrong)."""
    import hashlib

    import onnx

    folder = current_version(model_dir)
    model = onnx.load(folder / MODEL_FILE)
    _rewire(model.graph, change)
    data = model.SerializeToString()
    (folder / MODEL_FILE).write_bytes(data)
    card = json.loads((folder / CARD_FILE).read_text())
    card["onnx_sha256"] = hashlib.sha256(data).hexdigest()
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError) as caught:
        OnnxModel.load(model_dir)
    assert str(caught.value).startswith(f"{folder / MODEL_FILE}: ")
    assert message in str(caught.value)
