"""The model server in process: every endpoint, and answers equal to the in-process model's."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from mlops_template._fs import current_version
from mlops_template.card import ModelCard
from mlops_template.data import TEST_FILE
from mlops_template.inference import OnnxModel
from mlops_template.serving import create_app
from mlops_template.settings import Settings


def records(prepared_dir: Path, card: ModelCard) -> list[dict[str, object]]:
    test = pl.read_parquet(current_version(prepared_dir) / TEST_FILE).select(card.feature_names)
    return test.to_dicts()


def v2_inputs(rows: list[dict[str, object]], card: ModelCard) -> list[dict[str, object]]:
    return [
        {
            "name": f.name,
            "shape": [len(rows), 1],
            "datatype": "BYTES" if f.type == "category" else "FP32",
            "data": [row[f.name] for row in rows],
        }
        for f in card.features
    ]


def test_predict_equals_the_in_process_model_for_every_test_row(
    api: TestClient, prepared_dir: Path, trained_dir: Path, card: ModelCard
) -> None:
    rows = records(prepared_dir, card)
    model = OnnxModel.load(trained_dir)
    served: list[dict[str, object]] = []
    for start in range(0, len(rows), 50):
        response = api.post("/predict", json={"records": rows[start : start + 50]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == card.version
        assert body["model_name"] == "penguins"
        served += body["predictions"]
    expected = model.predict({n: [r[n] for r in rows] for n in card.feature_names})
    assert expected.labels is not None
    assert expected.probabilities is not None
    assert [p["label"] for p in served] == expected.labels.tolist()
    probabilities = np.array([[p["probabilities"][c] for c in card.classes or ()] for p in served])
    np.testing.assert_allclose(probabilities, expected.probabilities, atol=1e-6)


def test_v2_infer_gives_the_same_answer_as_predict(
    api: TestClient, prepared_dir: Path, card: ModelCard
) -> None:
    rows = records(prepared_dir, card)[:20]
    predicted = api.post("/predict", json={"records": rows}).json()["predictions"]
    response = api.post(
        "/v2/models/penguins/infer", json={"id": "r1", "inputs": v2_inputs(rows, card)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r1"
    assert body["model_version"] == card.version
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == [p["label"] for p in predicted]
    assert outputs["probabilities"]["shape"] == [20, 3]
    flat = [p["probabilities"][c] for p in predicted for c in card.classes or ()]
    np.testing.assert_allclose(outputs["probabilities"]["data"], flat, atol=1e-6)
    versioned = api.post(
        f"/v2/models/penguins/versions/{card.version}/infer",
        json={"inputs": v2_inputs(rows, card), "outputs": [{"name": "label"}]},
    )
    assert [o["name"] for o in versioned.json()["outputs"]] == ["label"]


def test_missing_values_are_accepted_where_the_card_allows(
    api: TestClient, card: ModelCard
) -> None:
    row = {**card.example, "sex": None, "bill_depth_mm": None}
    response = api.post("/predict", json={"records": [row]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] in (card.classes or ())


def test_health_and_metadata(api: TestClient, card: ModelCard) -> None:
    assert api.get("/health/live").json() == {"status": "live"}
    assert api.get("/health/ready").json() == {"status": "ready"}
    assert api.get("/v2/health/live").json() == {"live": True}
    assert api.get("/v2/health/ready").json() == {"ready": True}
    assert api.get("/v2/models/penguins/ready").json() == {"name": "penguins", "ready": True}
    metadata = api.get("/v2/models/penguins").json()
    assert metadata["versions"] == [card.version]
    assert [i["name"] for i in metadata["inputs"]] == list(card.feature_names)
    assert {i["datatype"] for i in metadata["inputs"]} == {"BYTES", "FP32"}
    probabilities = next(o for o in metadata["outputs"] if o["name"] == "probabilities")
    assert json.loads(probabilities["parameters"]["classes"]) == list(card.classes or ())
    assert api.get("/v2").json()["name"] == "mlops_template"
    assert api.get("/model").json()["onnx_sha256"] == card.onnx_sha256


def test_docs_show_the_real_features_and_a_working_example(
    api: TestClient, card: ModelCard
) -> None:
    schema = api.get("/openapi.json").json()
    record = schema["components"]["schemas"]["Record"]
    assert list(record["properties"]) == list(card.feature_names)
    assert record["additionalProperties"] is False
    island = record["properties"]["island"]
    assert island["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert record["properties"]["bill_length_mm"]["anyOf"][0]["maximum"] == 80
    example = schema["components"]["schemas"]["PredictRequest"]["examples"][0]
    assert api.post("/predict", json=example).status_code == 200
    responses = schema["paths"]["/predict"]["post"]["responses"]
    assert set(responses) == {"200", "400", "413", "415", "422", "500", "503"}
    assert api.get("/docs").status_code == 200


def test_metrics_count_requests_rows_and_classes(trained_dir: Path, card: ModelCard) -> None:
    app = create_app(Settings(model_dir=trained_dir))
    with TestClient(app) as client:
        client.post("/predict", json={"records": [card.example] * 3})
        client.post("/predict", json={"records": []})
        text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert "model_rows_predicted_total 3.0" in text
    assert "model_predictions_total{label=" in text
    assert 'http_request_duration_seconds_count{route="/predict"} 2.0' in text
    assert f'version="{card.version}"' in text


def test_request_id_is_echoed_or_made(api: TestClient, card: ModelCard) -> None:
    given = api.post(
        "/predict", json={"records": [card.example]}, headers={"x-request-id": "abc-123"}
    )
    assert given.headers["x-request-id"] == "abc-123"
    made = api.post(
        "/predict", json={"records": []}, headers={"x-request-id": "bad id with spaces"}
    )
    assert made.headers["x-request-id"] != "bad id with spaces"
    assert made.json()["request_id"] == made.headers["x-request-id"]


def test_overload_answers_503_at_once(
    trained_dir: Path, card: ModelCard, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(model_dir=trained_dir, max_concurrency=1))
    with TestClient(app) as client:
        app.state.service.inflight.count = 1  # one request already being handled
        burst = [client.post("/predict", json={"records": [card.example]}) for _ in range(50)]
        live = client.get("/health/live")
        ready = client.get("/health/ready")
        asset = client.get("/static/swagger-ui/swagger-ui.css")
        metrics = client.get("/metrics").text
        app.state.service.inflight.count = 0
        ok = client.post("/predict", json={"records": [card.example]})
    busy = burst[0]
    assert {r.status_code for r in burst} == {503}
    assert busy.headers["retry-after"] == "1"
    # A burst is a line a second with its count, not a line per request; a warning: the
    # server protecting itself, not a fault.
    overloads = [r for r in caplog.records if r.getMessage() == "requests refused for overload"]
    assert [(r.levelname, getattr(r, "count", None)) for r in overloads] == [("WARNING", 1)]
    assert 'http_requests_total{method="POST",route="/predict",status="503"} 50.0' in metrics
    assert busy.json()["detail"] == ["server overloaded; retry shortly"]
    assert live.status_code == 200
    assert ready.status_code == 200  # readiness is never refused for load
    assert asset.status_code == 200  # nor are files
    assert ok.status_code == 200


def test_a_model_that_produces_nan_is_never_a_200(
    model_dir: Path, card: ModelCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ort.InferenceSession.run

    def poisoned(self: ort.InferenceSession, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        return [np.full_like(array, np.nan) for array in real(self, *args, **kwargs)]

    app = create_app(Settings(model_dir=model_dir, batching=False))
    with TestClient(app) as client:  # started (its smoke prediction run) before the poison
        monkeypatch.setattr(ort.InferenceSession, "run", poisoned)
        response = client.post("/predict", json={"records": [card.example]})
    assert response.status_code == 500
    assert response.json()["detail"] == ["the model produced a non-finite output (NaN or infinity)"]


def test_serving_never_imports_training_libraries(trained_dir: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from mlops_template.serving import create_app
from mlops_template.settings import Settings
app = create_app(Settings(model_dir=Path({str(trained_dir)!r})))
with TestClient(app) as client:
    card = client.get("/model").json()
    assert client.post("/predict", json={{"records": [card["example"]]}}).status_code == 200
roots = {{"sklearn", "skl2onnx", "matplotlib"}}
print([n for n in sys.modules if n.split(".")[0] in roots or n.endswith(".train")])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')) == []


def test_metrics_name_documentation_routes_and_pool_unknown_paths(api: TestClient) -> None:
    api.get("/docs")
    api.get("/openapi.json")
    api.get("/no/such/page")
    api.get("/static/swagger-ui/no-such-file.js")
    text = api.get("/metrics").text
    assert 'route="/static",status="404"' in text
    assert "no-such-file" not in text
    assert 'route="/docs",status="200"' in text
    assert 'route="/openapi.json",status="200"' in text
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/page" not in text


class RequireKey:
    """Authentication as the README shows it: a pure ASGI middleware."""

    def __init__(self, app: Any, key: bytes) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        open_path = scope.get("path", "").startswith(("/health", "/v2/health"))
        keyed = (b"x-api-key", self.key) in scope.get("headers", ())
        if scope["type"] == "http" and not open_path and not keyed:
            answer = JSONResponse({"detail": ["missing or wrong X-API-Key"]}, status_code=401)
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def test_middleware_applies_to_the_routes_that_answer_from_raw_asgi(
    trained_dir: Path, card: ModelCard
) -> None:
    """/predict and v2 infer are plain ASGI endpoints in the app's router: the middleware an
    app adds (authentication, a header) applies to them as to every route."""
    from starlette.middleware.base import BaseHTTPMiddleware

    app = create_app(Settings(model_dir=trained_dir))

    async def stamp(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-added-by-the-app"] = "yes"
        return response

    app.add_middleware(RequireKey, key=b"s3cret")
    app.add_middleware(BaseHTTPMiddleware, dispatch=stamp)
    infer = f"/v2/models/{card.name}/infer"
    v2_body = {"inputs": v2_inputs([card.example], card)}
    with TestClient(app) as client:
        refused = client.post("/predict", json={"records": [card.example]})
        refused_v2 = client.post(infer, json=v2_body)
        key = {"x-api-key": "s3cret"}
        allowed = client.post("/predict", json={"records": [card.example]}, headers=key)
        allowed_v2 = client.post(infer, json=v2_body, headers=key)
        ready = client.get("/health/ready")
    assert refused.status_code == refused_v2.status_code == 401
    assert refused.json()["detail"] == ["missing or wrong X-API-Key"]
    assert allowed.status_code == allowed_v2.status_code == 200
    assert allowed.headers["x-added-by-the-app"] == "yes"
    assert refused.headers["x-added-by-the-app"] == "yes"
    assert ready.status_code == 200


def test_docs_show_errors_as_the_server_words_them(api: TestClient, card: ModelCard) -> None:
    """The error examples in /docs are what the server answers for the model's own first
    feature, in the server's own words."""
    first = card.feature_names[0]
    record = {**card.example, first: True}
    served = api.post("/predict", json={"records": [record]}).json()["detail"]
    components = api.get("/openapi.json").json()["components"]["schemas"]
    assert components["ErrorResponse"]["properties"]["detail"]["examples"] == [served]
    example = components["InferErrorResponse"]["properties"]["error"]["examples"][0]
    assert example == served[0].replace("(record 0)", "(row 0)")
    assert example.startswith(f"column '{first}': ")


def test_docs_work_with_no_network(api: TestClient) -> None:
    """Swagger UI comes from the package's own copy, not from a CDN."""
    import re

    page = api.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources
    assert all(url.startswith("/") for url in sources), sources  # nothing from another host
    for url in sources:
        asset = api.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500
    assert "openapi.json" in page.text
    assert api.get("/redoc").status_code == 404  # ReDoc loads from a CDN: not offered


@pytest.mark.parametrize(("accept", "encoded"), [("gzip, br", True), ("identity", False)])
def test_the_stored_docs_bundle_reaches_every_client_whole(
    api: TestClient, accept: str, encoded: bool
) -> None:
    """Swagger UI's bundle is stored gzip-compressed: sent as stored where the client accepts
    gzip (every browser), unpacked as it streams otherwise; the same script either way."""
    from mlops_template.serving.assets import STATIC

    stored = (STATIC / "swagger-ui" / "swagger-ui-bundle.js.gz").read_bytes()
    path = "/static/swagger-ui/swagger-ui-bundle.js"
    with api.stream("GET", path, headers={"Accept-Encoding": accept}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers.get("content-encoding") == ("gzip" if encoded else None)
        body = b"".join(response.iter_raw())  # as sent: no automatic decoding
    assert body == (stored if encoded else gzip.decompress(stored))


def test_the_model_file_is_shared_only_when_the_setting_says_so(
    api: TestClient, model_dir: Path
) -> None:
    """GET /model.onnx: by default a 404 that names the setting; with `model_download`, the very
    bytes this process loaded (even once the file is gone), revalidated by their hash."""
    import hashlib

    from mlops_template.card import MODEL_FILE

    refused = api.get("/model.onnx")
    assert refused.status_code == 404
    assert "MLOPS_TEMPLATE_MODEL_DOWNLOAD=true" in refused.json()["detail"][0]
    on_disk = current_version(model_dir) / MODEL_FILE
    loaded = on_disk.read_bytes()
    with TestClient(create_app(Settings(model_dir=model_dir, model_download=True))) as client:
        on_disk.unlink()  # a newer training run pruned it: the server still shares what it serves
        shared = client.get("/model.onnx")
        card = client.get("/model").json()
        again = client.get("/model.onnx", headers={"If-None-Match": shared.headers["etag"]})
        anything = client.get("/model.onnx", headers={"If-None-Match": "*"})
        other = client.get("/model.onnx", headers={"If-None-Match": '"0123"'})
    assert shared.status_code == 200
    assert shared.headers["content-type"] == "application/octet-stream"
    assert shared.headers["cache-control"] == "no-cache"
    assert shared.content == loaded
    assert hashlib.sha256(shared.content).hexdigest() == card["onnx_sha256"]
    assert shared.headers["etag"] == f'"{card["onnx_sha256"]}"'
    assert again.status_code == anything.status_code == 304
    assert again.content == b""
    assert other.status_code == 200
    assert other.content == loaded


def test_a_trailing_slash_is_not_found_rather_than_redirected(
    api: TestClient, card: ModelCard
) -> None:
    """A redirect would send the client to whatever host its Host header claimed."""
    for path in ("/predict/", "/health/ready/"):
        response = api.request(
            "POST" if path.startswith("/predict") else "GET",
            path,
            json={"records": [card.example]},
            headers={"host": "attacker.example"},
            follow_redirects=False,
        )
        assert response.status_code == 404
        assert "location" not in response.headers


def test_an_answer_stays_small_however_many_problems_a_request_has(
    api: TestClient, card: ModelCard
) -> None:
    tensors = [
        {"name": f"{i:03d}" + "x" * 150, "shape": [1], "datatype": "FP32", "data": [1]}
        for i in range(250)
    ]
    response = api.post(f"/v2/models/{card.name}/infer", json={"inputs": tensors})
    assert response.status_code == 422
    assert len(response.content) < 4096
    assert response.json()["error"].endswith(f"and {250 + len(card.features) - 20} more")
    records = [{f"unknown {j}": j for j in range(10)} for _ in range(60)]
    response = api.post("/predict", json={"records": records})
    assert response.status_code == 422
    assert len(response.json()["detail"]) <= 21
