"""The demo page at `/demo`: served whole from the package, and driven in a real headless
Chromium, where the form is built from the model card, a prediction shows its label and bars, a
refused value shows the server's own message, and the page scores the same ONNX file itself with
onnxruntime-web and agrees with the server."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, ModelCard, load_card
from mlops_template.data import TEST_FILE
from mlops_template.schema import (
    DatasetSchema,
    GradientBoostingModel,
    RandomForestModel,
)

from .test_serving_live import post, serving

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The most the page's answers (onnxruntime-web, WebAssembly) may differ from the server's.
TOLERANCE = 1e-5
# The setting that lets the server share its ONNX file with the page.
DOWNLOAD = {"MLOPS_TEMPLATE_MODEL_DOWNLOAD": "true"}
# sha256 of onnxruntime-web 1.31.1's `dist/ort-wasm-simd-threaded.wasm`, as npm ships it.
WASM_SHA256 = "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d"


def browser() -> str | None:
    """A Chromium on this machine: $CHROMIUM, or one on PATH (Debian's `chromium` package;
    GitHub's runners have Google Chrome). No browser is ever downloaded."""
    found = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    return found if found and Path(found).exists() else None


@pytest.fixture(scope="module")
def regression_dir(schema: DatasetSchema, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression model on the same data: body mass from the rest, species a feature."""
    from mlops_template.data import prepare_dataset
    from mlops_template.train import train_model

    data = schema.model_dump()
    mass = next(f for f in data["features"] if f["name"] == "body_mass_g")
    data["features"] = [f for f in data["features"] if f["name"] != "body_mass_g"]
    data["features"].append({**data["target"], "description": ""})
    data["target"] = {**mass, "nullable": False}
    variant = DatasetSchema.model_validate(data)
    root = tmp_path_factory.mktemp("regression")
    prepare_dataset(variant, root / "processed")
    train_model(variant, root / "processed", root / "models")
    return root / "models"


@pytest.fixture(scope="module")
def dated_dir(schema: DatasetSchema, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Species from the measurements and two clocks: the day a penguin was seen (a date) and
    the moment it was logged (a time, two hours east of UTC)."""
    import polars as pl

    from mlops_template.data import prepare_dataset
    from mlops_template.train import train_model

    root = tmp_path_factory.mktemp("dated")
    row = pl.int_range(pl.len())
    day = pl.format("{}-{}-13", "year", (row % 12 + 1).cast(pl.String).str.zfill(2))
    moment = pl.format("{}T{}:30:00+02:00", day, (row % 14 + 6).cast(pl.String).str.zfill(2))
    frame = pl.read_csv(schema.source, infer_schema=False, null_values=list(schema.null_values))
    frame.with_columns(day.alias("seen"), moment.alias("logged")).write_csv(root / "dated.csv")
    data = schema.model_dump()
    data["source"] = root / "dated.csv"
    clocks = [{"name": "seen", "type": "date"}, {"name": "logged", "type": "datetime"}]
    data["features"] = [*data["features"], *clocks]
    variant = DatasetSchema.model_validate(data)
    prepare_dataset(variant, root / "processed")
    train_model(variant, root / "processed", root / "models")
    return root / "models"


def held_out_rows(processed_dir: Path, card: ModelCard) -> list[dict[str, Any]]:
    """The held-out split's feature values, as a client sends them (dates as ISO 8601)."""
    import polars as pl

    split = current_version(processed_dir) / TEST_FILE
    dates = [pl.col(f.name).cast(pl.String) for f in card.features if f.is_date]
    return pl.read_parquet(split).select(card.feature_names).with_columns(dates).to_dicts()


def assert_agree(card: ModelCard, server: list[dict[str, Any]], page: list[dict[str, Any]]) -> None:
    """Row by row: the same label and probabilities within TOLERANCE, or the same value."""
    assert len(page) == len(server)
    for row, (theirs, ours) in enumerate(zip(server, page, strict=True)):
        if card.task == "regression":
            assert abs(ours["value"] - theirs["value"]) <= TOLERANCE * abs(theirs["value"]), row
            continue
        assert ours["label"] == theirs["label"], (row, ours, theirs)
        for name, probability in theirs["probabilities"].items():
            assert abs(ours["probabilities"][name] - probability) <= TOLERANCE, (row, name)


def example(request: pytest.FixtureRequest, task: str) -> tuple[Path, Path]:
    """One example's model and prepared data folders: penguin species, body mass (the
    `regression_dir` fixture), species with dates (`dated_dir`), or a question's topic."""
    if task == "dated":
        models = Path(request.getfixturevalue("dated_dir"))
        return models, models.parent / "processed"
    if task == "text":
        root = Path(request.getfixturevalue("text_models"))
        return root / "models", root / "processed"
    if task == "regression":
        models = Path(request.getfixturevalue("regression_dir"))
        return models, models.parent / "processed"
    return Path(request.getfixturevalue("trained_dir")), request.getfixturevalue("prepared_dir")


def require_browser() -> str:
    """The browser and Playwright, or a skip that says what to install."""
    executable = browser()
    if executable is None:
        pytest.skip("no Chromium here: install Debian's `chromium` (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    return executable


@contextlib.contextmanager
def demo_server(model_dir: Path, tmp_path: Path, **env: str) -> Iterator[tuple[str, Any]]:
    """The model served (with `env`), and a fresh page of headless Chromium: (URL, page)."""
    executable = require_browser()
    from playwright import sync_api

    with serving(model_dir, tmp_path, **env) as server, sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            # A browser far from UTC: the page must read times in UTC as the server does.
            yield server.url, chromium.new_page(timezone_id="Pacific/Auckland")
        finally:
            chromium.close()


def wait_for_status(page: Any, pattern: str) -> str:
    """The line that says whether the page scores by itself, once it matches `pattern`."""
    page.wait_for_function(
        f"() => /{pattern}/.test(document.getElementById('page-status').textContent)",
        timeout=30_000,
    )
    return str(page.inner_text("#page-status"))


@pytest.mark.e2e
@pytest.mark.parametrize("task", ["classification", "regression", "text", "dated"])
def test_the_demo_page_predicts_and_shows_refusals(
    request: pytest.FixtureRequest, task: str, tmp_path: Path
) -> None:
    model_dir, processed_dir = example(request, task)
    card = load_card(current_version(model_dir) / CARD_FILE)
    rows = held_out_rows(processed_dir, card)
    problems: list[str] = []
    with demo_server(model_dir, tmp_path, **DOWNLOAD) as (url, page):

        def console(message: Any) -> None:
            if message.type == "error":
                problems.append(message.text)

        page.on("console", console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(f"{url}/demo")
        page.wait_for_selector("#form:not([hidden])", timeout=15_000)
        for feature in card.features:  # one field per feature, filled with the example row
            assert page.locator(f"#feature-{feature.name}").count() == 1
            if feature.type == "text":  # free text is typed into a text area
                field = page.locator(f"textarea#feature-{feature.name}")
                assert field.input_value() == (card.example[feature.name] or "")
                field.fill("Who wrote the play Hamlet? ¿Quién escribió Hamlet?")

        # The page loads the served ONNX file into onnxruntime-web before the first answer.
        wait_for_status(page, "also scores")
        page.click("#predict")
        page.wait_for_selector("#answer:not([hidden])", timeout=15_000)
        headline = page.inner_text("#headline")
        page.wait_for_selector("#page-answer:not([hidden])", timeout=15_000)  # side by side
        assert page.inner_text("#page-headline").partition(": ")[0] == card.target.name
        if task != "regression":
            assert page.inner_text("#page-headline") == headline
        assert page.inner_text("#agreement").startswith("The two agree"), page.inner_text(
            "#agreement"
        )
        if task != "regression":
            assert card.classes is not None
            assert any(headline.endswith(f": {label}") for label in card.classes), headline
            assert page.locator("#bars .bar").count() == len(card.classes)
        else:
            name, _, value = headline.partition(": ")
            assert name == card.target.name
            assert float(value) > 0, headline  # a body mass in grams
            assert page.locator("#bars .bar").count() == 0
        page.screenshot(path=str(tmp_path / "demo-answer.png"), full_page=True)
        assert problems == [], problems  # no console error while loading and predicting

        numeric = next(f for f in card.features if f.is_numeric and f.max is not None)
        page.fill(f"#feature-{numeric.name}", str(numeric.max * 10 + 1))
        page.click("#predict")
        page.wait_for_selector("#problems:not([hidden])", timeout=15_000)
        refusal = page.inner_text("#problem-list")
        assert f"column '{numeric.name}': above the maximum" in refusal, refusal
        assert page.is_hidden("#answer")
        page.screenshot(path=str(tmp_path / "demo-refusal.png"), full_page=True)

        # The whole held-out split, scored in the page and by the server: they agree.
        in_page = page.evaluate("rows => window.demo.scoreInPage(rows)", rows)
        status, body = post(f"{url}/predict", {"records": rows})
    assert status == 200, body
    assert_agree(card, body["predictions"], in_page)
    assert (tmp_path / "demo-answer.png").stat().st_size > 1000
    # The refusal's only console line is the browser's own note of the 422 it received.
    assert all("status of 422" in p for p in problems), problems


@pytest.mark.e2e
def test_without_the_model_file_the_page_says_why_and_the_server_answers(
    trained_dir: Path, tmp_path: Path
) -> None:
    """By default the server keeps its ONNX file to itself: the page says so, naming the
    setting, and shows the server's answer alone."""
    with demo_server(trained_dir, tmp_path) as (url, page):
        page.goto(f"{url}/demo")
        status = wait_for_status(page, "does not score")
        assert "MLOPS_TEMPLATE_MODEL_DOWNLOAD=true" in status, status
        page.click("#predict")
        page.wait_for_selector("#answer:not([hidden])", timeout=15_000)
        assert page.inner_text("#headline").startswith("species: ")
        assert page.is_hidden("#page-answer")
        assert page.inner_text("#agreement") == ""


@pytest.mark.e2e
@pytest.mark.parametrize(
    "model",
    [
        RandomForestModel(type="random_forest", n_estimators=30),
        GradientBoostingModel(type="gradient_boosting", n_estimators=30),
    ],
    ids=attrgetter("type"),
)
def test_the_page_runs_the_tree_ensembles_as_the_server_does(
    schema: DatasetSchema,
    prepared_dir: Path,
    tmp_path: Path,
    model: RandomForestModel | GradientBoostingModel,
) -> None:
    """onnxruntime-web runs the `ai.onnx.ml` tree ensembles too: the held-out split scored in
    the page agrees with the server's answers."""
    from mlops_template.train import train_model

    require_browser()  # before the training, which the test needs only with a browser
    models = tmp_path / "models"
    train_model(schema.model_copy(update={"model": model}), prepared_dir, models)
    card = load_card(current_version(models) / CARD_FILE)
    assert card.estimator != "LogisticRegression"
    rows = held_out_rows(prepared_dir, card)
    with demo_server(models, tmp_path, **DOWNLOAD) as (url, page):
        page.goto(f"{url}/demo")
        wait_for_status(page, "also scores")
        in_page = page.evaluate("rows => window.demo.scoreInPage(rows)", rows)
        status, body = post(f"{url}/predict", {"records": rows})
    assert status == 200, body
    assert_agree(card, body["predictions"], in_page)


def test_the_demo_page_is_served_whole_from_the_package(api: TestClient) -> None:
    """`/demo` and what it loads come from this server (the browser test drives it)."""
    import re

    page = api.get("/demo")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = [u for u in re.findall(r'(?:src|href)="([^"]+)"', page.text) if u != "data:,"]
    assert {"/static/demo/demo.js", "/static/demo/demo.css"} <= set(sources)
    assert all(url.startswith("/") for url in sources), sources  # nothing from another host
    for url in sources:
        assert api.get(url).status_code == 200, url


@pytest.mark.parametrize(
    ("accept", "encoded"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1, gzip;q=0.5", True),
        ("*", True),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0.0, *", False),
        ("*;q=0, gzip", True),
        ("", False),
    ],
)
def test_the_webassembly_runtime_reaches_every_client_whole(
    api: TestClient, accept: str, encoded: bool
) -> None:
    """onnxruntime-web's runtime is stored gzip-compressed: sent as it is where the client
    accepts gzip (every browser), unpacked otherwise; the same 14.8 MB either way."""
    import hashlib

    path = "/static/onnxruntime-web/ort-wasm-simd-threaded.wasm"
    with api.stream("GET", path, headers={"Accept-Encoding": accept}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/wasm"
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers.get("content-encoding") == ("gzip" if encoded else None)
        body = b"".join(response.iter_raw())  # as sent: no automatic decoding
    if encoded:
        assert body[:2] == b"\x1f\x8b"
    wasm = gzip.decompress(body) if encoded else body
    assert wasm[:4] == b"\0asm"  # a WebAssembly module, as vendored from onnxruntime-web 1.31.1
    assert hashlib.sha256(wasm).hexdigest() == WASM_SHA256
