"""Generated requests: Schemathesis from the app's own OpenAPI schema, and Hypothesis payloads
with NaN, infinity and other values Schemathesis never sends."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS
from schemathesis.generation import GenerationMode

from mlops_template.serving import create_app
from mlops_template.settings import Settings

pytestmark = pytest.mark.e2e

CASES_PER_OPERATION = 250  # each of the two operations that take a body (/predict, v2 infer)


@pytest.fixture(scope="module")
def served_app(trained_dir: Path) -> Iterator[Any]:
    app = create_app(Settings(model_dir=trained_dir, max_batch_rows=64))
    with TestClient(app):  # runs the lifespan: the model is loaded and ready
        yield app


@pytest.fixture(scope="module")
def api_schema(served_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served_app)


def operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def test_the_schema_lists_every_operation(api_schema: Any) -> None:
    labels = {op.label for op in operations(api_schema)}
    assert {
        "POST /predict",
        "POST /v2/models/{model_name}/infer",
        "GET /metrics",
        "GET /model",
    } <= labels


V2_INFER = "POST /v2/models/{model_name}/infer"


def with_consistent_tensors(case: Any) -> Any:
    """A v2 request made whole by the two rules of the protocol that JSON Schema cannot state
    (the published schema says so): a tensor's shape gives how many values it holds, and every
    tensor has the same number of rows."""
    inputs = case.body.get("inputs") if isinstance(case.body, dict) else None
    if isinstance(inputs, list):
        tensors = [t for t in inputs if isinstance(t, dict) and isinstance(t.get("data"), list)]
        rows = min((len(t["data"]) for t in tensors), default=1)
        for t in tensors:
            t["data"] = t["data"][:rows]
            t["shape"] = [rows, 1] if len(t.get("shape") or ()) == 2 else [rows]
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_api_conforms_to_its_schema(api_schema: Any, mode: GenerationMode) -> None:
    """Every operation, valid then invalid data, every Schemathesis check."""
    cases = 0
    for operation in operations(api_schema):
        strategy = operation.as_strategy(generation_mode=mode)
        if mode == GenerationMode.POSITIVE and operation.label == V2_INFER:
            strategy = strategy.map(with_consistent_tensors)

        @given(case=strategy)
        @settings(
            max_examples=CASES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            nonlocal cases
            cases += 1
            case.call_and_validate(checks=CHECKS.get_all())

        try:
            check()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid data to send.
            assert mode == GenerationMode.NEGATIVE
    # The two predicting operations get their full share, valid or not (the others take
    # little or no input: a model name has one valid value).
    assert cases >= 2 * CASES_PER_OPERATION


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def literal(value: Any) -> str:
    """JSON as a lenient client would write it: NaN and Infinity as bare literals."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return "[" + ",".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@settings(
    max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(data=st.data())
def test_adversarial_payloads_never_cause_a_5xx(served_app: Any, data: st.DataObject) -> None:
    """Records and tensors of this model's own features (and others), any values at all."""
    card = served_app.state.service.card
    names = list(card.feature_names)
    rows = data.draw(
        st.lists(
            st.dictionaries(
                st.sampled_from([*names, "extra"]), JSON_VALUES, max_size=len(names) + 1
            ),
            max_size=4,
        )
    )
    tensors = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from([*names, "other"]),
                    "shape": st.lists(st.integers(min_value=-1, max_value=3), max_size=3),
                    "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "x"]),
                    "data": st.lists(JSON_VALUES, max_size=4),
                }
            ),
            max_size=len(names) + 1,
        )
    )
    with TestClient(served_app) as client:
        predict = client.post(
            "/predict",
            content='{"records":' + literal(rows) + "}",
            headers={"content-type": "application/json"},
        )
        infer = client.post(
            f"/v2/models/{quote(card.name, safe='')}/infer",
            content='{"inputs":' + literal(tensors) + "}",
            headers={"content-type": "application/json"},
        )
    for response in (predict, infer):
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert "Infinity" not in response.text
            assert "NaN" not in response.text
    if predict.status_code >= 400:
        assert isinstance(predict.json()["detail"], list)
    if infer.status_code >= 400:  # the Open Inference Protocol's own error body
        assert isinstance(infer.json()["error"], str)
