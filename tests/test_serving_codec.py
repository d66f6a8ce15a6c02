"""`/predict`'s compiled codec: it takes exactly the bodies Python's own parser says are right
and gives their columns, and its assembled answer is byte for byte what orjson writes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_template.card import ModelCard
from mlops_template.errors import ApiError
from mlops_template.inference import Prediction
from mlops_template.serving.routes.predict import RecordsCodec

MAX_ROWS = 4

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["Biscoe", "Dream", "male", "female", "1", "1.0", ":", '"']),
    st.lists(st.integers(), max_size=2),
)


def _object(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object from its key-value pairs, a key given twice kept twice."""
    return "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"


@st.composite
def bodies(draw: st.DrawFn, names: tuple[str, ...]) -> bytes:
    """`/predict` bodies, mostly right in shape, with every way of being wrong in it."""
    rows = draw(st.integers(min_value=0, max_value=MAX_ROWS + 1))
    records = []
    for _ in range(rows):
        keys = list(names)
        if draw(st.booleans()):
            keys = draw(st.permutations(keys))
        pairs = [(k, draw(values)) for k in keys]
        mistake = draw(st.sampled_from(["none"] * 6 + ["drop", "extra", "twice"]))
        if mistake == "drop" and pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif mistake == "extra":
            pairs.append((draw(st.sampled_from(["extra", "", "a:b"])), draw(values)))
        elif mistake == "twice":
            pairs.append((draw(st.sampled_from(names)), draw(values)))
        records.append(_object(pairs))
    envelope = [("records", "[" + ",".join(records) + "]")]
    if draw(st.integers(0, 9)) == 0:
        envelope.append((draw(st.sampled_from(["records", "other"])), "[]"))
    text = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in envelope) + "}"
    if draw(st.integers(0, 19)) == 0:
        text = text[: draw(st.integers(0, len(text)))]  # cut short: not JSON
    if draw(st.integers(0, 19)) == 0:
        return text.replace("e", "\udcff").encode(errors="surrogateescape")  # not UTF-8
    return text.encode()


def _outcome(read: Any, body: bytes) -> Any:
    try:
        return read(body)
    except ApiError as exc:
        return exc.status


def _expected(body: bytes, names: tuple[str, ...]) -> Any:
    """What the reader must give, from Python's own parser: 400 for a body that is not JSON or
    gives a key twice in one object, 422 for a wrong envelope, else the columns."""
    twice = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twice
        twice |= len({k for k, _ in items}) < len(items)
        return dict(items)

    try:
        data = json.loads(body, object_pairs_hook=pairs, parse_constant=_not_json)
    except ValueError:
        return 400
    if twice:
        return 400
    records = data.get("records") if isinstance(data, dict) and set(data) == {"records"} else None
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_ROWS:
        return 422
    if not all(isinstance(r, dict) and set(r) == set(names) for r in records):
        return 422
    return {name: [r[name] for r in records] for name in names}


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_reader_takes_exactly_the_right_envelopes(card: ModelCard, data: st.DataObject) -> None:
    """Checked against Python's own parser: the same verdict, the same values of the same types
    (1 is not 1.0) for every body, right or wrong in any way."""
    codec = RecordsCodec(card, MAX_ROWS)
    body = data.draw(bodies(card.feature_names))
    got, wanted = _outcome(codec.read, body), _expected(body, card.feature_names)
    assert got == wanted
    if isinstance(got, dict):
        assert [list(map(type, v)) for v in got.values()] == [
            list(map(type, v)) for v in wanted.values()
        ]


def test_the_fast_reader_refuses_what_the_envelope_forbids(card: ModelCard) -> None:
    codec = RecordsCodec(card, MAX_ROWS)
    record = dict(card.example or {})
    twice = _object([*record.items(), (card.feature_names[0], record[card.feature_names[0]])])
    cases = {
        b'{"records": []}': 422,
        orjson.dumps({"records": [record] * (MAX_ROWS + 1)}): 422,
        orjson.dumps({"records": [{**record, "extra": 1}]}): 422,
        orjson.dumps({"records": [record], "more": 1}): 422,
        f'{{"records": [{twice}]}}'.encode(): 400,
        b'{"records": [' + orjson.dumps(record): 400,
    }
    for body, status in cases.items():
        with pytest.raises(ApiError) as raised:
            codec.read(body)
        assert raised.value.status == status, body


class_names = st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=5, unique=True)


@settings(max_examples=200, deadline=None)
@given(classes=class_names, data=st.data())
def test_the_answer_is_what_orjson_writes(
    card: ModelCard, classes: list[str], data: st.DataObject
) -> None:
    """Any class names (quotes, backslashes, any script) and any probabilities."""
    rows = data.draw(st.integers(min_value=1, max_value=40))
    floats = st.floats(min_value=0, max_value=1, width=32)
    probabilities = np.array(
        data.draw(
            st.lists(
                st.lists(floats, min_size=len(classes), max_size=len(classes)),
                min_size=rows,
                max_size=rows,
            )
        ),
        dtype=np.float32,
    )
    labels = np.array(classes, dtype=object)[probabilities.argmax(axis=1)]
    ours = card.model_copy(update={"classes": classes, "name": 'a "model"\\', "version": "v1"})
    answer = RecordsCodec(ours, MAX_ROWS).write(
        Prediction(labels=labels, probabilities=probabilities)
    )
    expected = {
        "model_name": ours.name,
        "model_version": ours.version,
        "predictions": [
            {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(labels.tolist(), probabilities, strict=True)
        ],
    }
    assert answer == orjson.dumps(expected, option=orjson.OPT_SERIALIZE_NUMPY)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1))
def test_a_regression_answer_is_what_orjson_writes(card: ModelCard, values: list[float]) -> None:
    ours = card.model_copy(update={"task": "regression", "classes": None})
    array = np.array(values, dtype=np.float32)
    answer = RecordsCodec(ours, MAX_ROWS).write(Prediction(values=array))
    expected = {
        "model_name": ours.name,
        "model_version": ours.version,
        "predictions": [{"value": v} for v in array],
    }
    assert answer == orjson.dumps(expected, option=orjson.OPT_SERIALIZE_NUMPY)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
