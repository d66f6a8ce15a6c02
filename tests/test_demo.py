"""The demo page at `/demo`, driven in a real headless Chromium: the form is built from the model
card, a prediction shows its label and bars, a refused value shows the server's own message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, load_card
from mlops_template.schema import DatasetSchema

from .test_serving_live import serving

pytestmark = pytest.mark.e2e

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


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


@pytest.mark.parametrize("task", ["classification", "regression", "text"])
def test_the_demo_page_predicts_and_shows_refusals(
    request: pytest.FixtureRequest, task: str, tmp_path: Path
) -> None:
    fixture = {"classification": "trained_dir", "regression": "regression_dir"}
    if task == "text":
        model_dir = request.getfixturevalue("text_models") / "models"
    else:
        model_dir = request.getfixturevalue(fixture[task])
    card = load_card(current_version(model_dir) / CARD_FILE)
    executable = browser()
    if executable is None:
        pytest.skip("no Chromium here: install Debian's `chromium` (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with serving(model_dir, tmp_path) as server, sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = chromium.new_page()

        def console(message: Any) -> None:
            if message.type == "error":
                problems.append(message.text)

        page.on("console", console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(f"{server.url}/demo")
        page.wait_for_selector("#form:not([hidden])", timeout=15_000)
        for feature in card.features:  # one field per feature, filled with the example row
            assert page.locator(f"#feature-{feature.name}").count() == 1
            if feature.type == "text":  # free text is typed into a text area
                field = page.locator(f"textarea#feature-{feature.name}")
                assert field.input_value() == (card.example[feature.name] or "")
                field.fill("Who wrote the play Hamlet? ¿Quién escribió Hamlet?")

        page.click("#predict")
        page.wait_for_selector("#answer:not([hidden])", timeout=15_000)
        headline = page.inner_text("#headline")
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
        chromium.close()
    assert (tmp_path / "demo-answer.png").stat().st_size > 1000
    # The refusal's only console line is the browser's own note of the 422 it received.
    assert all("status of 422" in p for p in problems), problems
