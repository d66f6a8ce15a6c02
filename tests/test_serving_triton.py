"""The stock Open Inference Protocol client, Triton's `tritonclient[http]`, with its defaults:
metadata, readiness, and inference with binary tensors (its default) and with JSON tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.card import ModelCard
from mlops_template.data import TEST_FILE

from .test_serving_live import serving

pytestmark = pytest.mark.e2e
http = pytest.importorskip("tritonclient.http")  # a dev dependency: always there in `make test`


def inputs(rows: list[dict[str, Any]], card: ModelCard, *, binary: bool) -> list[Any]:
    tensors = []
    for spec in card.features:
        column = [row[spec.name] for row in rows]
        if spec.is_string:
            # The documented encoding of a missing label or text: the empty string.
            array = np.array([(v or "").encode() for v in column], dtype=object)
            datatype = "BYTES"
        else:
            # ... and of a missing number: NaN (binary), null (JSON).
            array = np.array([np.nan if v is None else v for v in column], dtype=np.float32)
            datatype = "FP32"
        tensor = http.InferInput(spec.name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return tensors


@pytest.mark.parametrize("example", ["penguins", "text"])
def test_the_stock_triton_client_works_unchanged(
    request: pytest.FixtureRequest, example: str, tmp_path: Path
) -> None:
    from mlops_template.card import CARD_FILE, load_card
    from mlops_template.inference import OnnxModel

    if example == "text":  # texts as BYTES, beside a number
        root = request.getfixturevalue("text_models")
        trained_dir, prepared_dir = root / "models", root / "processed"
    else:
        trained_dir = request.getfixturevalue("trained_dir")
        prepared_dir = request.getfixturevalue("prepared_dir")
    card = load_card(current_version(trained_dir) / CARD_FILE)
    test = pl.read_parquet(current_version(prepared_dir) / TEST_FILE)
    rows = test.select(card.feature_names).to_dicts()
    if not any(None in row.values() for row in rows):  # a missing value must travel too
        nullable = next(f.name for f in card.features if f.nullable)
        rows[0][nullable] = None
    expected = OnnxModel.load(trained_dir).predict(
        {name: [row[name] for row in rows] for name in card.feature_names}
    )
    with serving(trained_dir, tmp_path) as server:
        client = http.InferenceServerClient(url=server.url.removeprefix("http://"))
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(card.name)
        metadata = client.get_model_metadata(card.name)
        assert [i["name"] for i in metadata["inputs"]] == list(card.feature_names)
        probabilities = next(o for o in metadata["outputs"] if o["name"] == "probabilities")
        assert json.loads(probabilities["parameters"]["classes"]) == list(card.classes or ())

        # Defaults: binary input tensors, every output in binary.
        result = client.infer(card.name, inputs(rows, card, binary=True))
        labels = [b.decode() for b in result.as_numpy("label").reshape(-1)]
        assert labels == expected.labels.tolist()  # type: ignore[union-attr]
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), expected.probabilities, rtol=1e-6
        )

        # JSON tensors in and out.
        outputs = [
            http.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")
        ]
        result = client.infer(card.name, inputs(rows, card, binary=False), outputs=outputs)
        assert [str(x) for x in result.as_numpy("label").reshape(-1)] == labels

        # A bad value: the client raises with the server's own message.
        bounded = next(f for f in card.features if f.is_numeric and f.max is not None)
        bad = [{**rows[0], bounded.name: bounded.max * 10 + 1}]
        with pytest.raises(http.InferenceServerException, match="above the maximum"):
            client.infer(card.name, inputs(bad, card, binary=True))
        client.close()
