"""Rendered projects, for real: install, `make all`, train, serve on 127.0.0.1, one prediction."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ..test_contract import DATED, RENAMED, odd_names_project
from ..test_serving_live import free_port, get, post
from .conftest import render

pytestmark = pytest.mark.e2e
OPTIONS = ("docker", "devcontainer", "kubernetes", "demo", "dask", "tracking")
COMBINATIONS = {
    "default": {},
    "text, every option off, Apache-2.0": {
        "task": "text_classification",
        "license": "Apache-2.0",
        **{f"include_{option}": False for option in OPTIONS},
    },
    "regression, every option on": {
        "task": "regression",
        **{f"include_{option}": True for option in OPTIONS},
    },
}
# What each render is checked for. The default render runs its own tests once; the others are
# checked for what rendering changes (their lock installs, they lint and type-check, they
# prepare, train, predict and serve), not by running again the tests this repository's own
# suite has just run on the very same code.
TARGETS = {"default": ["all"]}


def environment() -> dict[str, str]:
    # As a fresh shell would have it: no outer virtualenv, no outer uv (it installs its own).
    return {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTEST_ADDOPTS", "UV"}}


@contextlib.contextmanager
def make_serve(path: Path, port_variable: str) -> Iterator[str]:
    """`make serve` in a rendered project on a free port; its URL once ready, then stopped."""
    port = free_port()
    server = subprocess.Popen(
        ["make", "serve"],
        cwd=path,
        env={**environment(), port_variable: str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if get(f"{url}/health/ready", timeout=1)[0] == 200:
                    break
            assert server.poll() is None, "make serve exited"
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


# The renders' checks at once, then prepare, train, predict and serve in each: each step carries
# its own time limit (1500 s, 600 s, 60 s), so the test's own is their sum.
@pytest.mark.timeout(1500 + 3 * (600 + 60) + 60)
def readme_data_flow_files(project: Path) -> list[str]:
    """The files under models/ and data/ that the README's "How data flows" drawing names."""
    readme = (project / "README.md").read_text()
    drawing = readme.split("## How data flows", 1)[1].split("```")[1]
    found = []
    for path in re.findall(r"(?<![\w/])(?:models|data)/[\w./{},-]+", drawing):
        folder, _, rest = path.rpartition("/")
        names = rest.split(" + ")[0]
        if "{" in names:  # data/processed/current/{train,test}.parquet
            stem, choices, suffix = re.split(r"[{}]", names)
            found += [f"{folder}/{stem}{choice}{suffix}" for choice in choices.split(",")]
        else:
            found.append(path.rstrip("."))
    assert len(found) >= 4, drawing
    return found


def test_rendered_projects_pass_make_all_train_and_serve(tmp_path: Path) -> None:
    projects = {
        name: render(tmp_path / f"project-{i}", project_name=f"End To End {i}", **answers)
        for i, (name, answers) in enumerate(COMBINATIONS.items())
    }
    # Both at once: the machine has two cores, and most of a test run waits on one.
    runs = {
        name: subprocess.Popen(
            ["make", *TARGETS.get(name, ["install", "lint", "typecheck"])],
            cwd=path,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, path in projects.items()
    }
    for name, process in runs.items():
        output, _ = process.communicate(timeout=1500)
        assert process.returncode == 0, f"{name}: make failed\n{output[-6000:]}"
    for i, (name, path) in enumerate(projects.items()):
        train = subprocess.run(
            [
                "make",
                "prepare",
                "train",
                "evaluate",
                "predict",
                "INPUT=" + tomllib.loads((path / "dataset.toml").read_text())["source"],
                "OUTPUT=scored.parquet",
            ],
            cwd=path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert train.returncode == 0, train.stdout + train.stderr
        missing = [p for p in readme_data_flow_files(path) if not (path / p).exists()]
        assert not missing, f"{name}: the README's data flow names files that are not there"
        card = json.loads((path / "models" / "current" / "model.json").read_text())
        task = COMBINATIONS[name].get("task", "classification")
        assert card["task"] == task.removeprefix("text_")
        assert (card["features"][0]["type"] == "text") == task.startswith("text")
        scored = pl.read_parquet(path / "scored.parquet")  # the whole raw file, scored in batch
        assert f"predicted_{card['target']['name']}" in scored.columns
        assert scored.height > 300
        with make_serve(path, f"END_TO_END_{i}_PORT") as url:
            status, body = post(f"{url}/predict", {"records": [card["example"]]})
            assert status == 200, body
            prediction = body["predictions"][0]
            assert ("label" in prediction) == (card["task"] == "classification")
            assert ("value" in prediction) == (card["task"] == "regression")
            # `make serve` shares the model file (the demo page, where there is one, scores it).
            with urllib.request.urlopen(f"{url}/model.onnx", timeout=10) as model_file:
                onnx_bytes = model_file.read()
            assert hashlib.sha256(onnx_bytes).hexdigest() == card["onnx_sha256"]
            demo = COMBINATIONS[name].get("include_demo", False)
            assert get(f"{url}/demo")[0] == (200 if demo else 404)


def make_in(path: Path, *targets: str) -> str:
    """`make TARGETS` in a rendered project, as a fresh shell runs it; its output, once it passed."""
    result = subprocess.run(
        ["make", *targets], cwd=path, env=environment(), capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"make {' '.join(targets)}\n{result.stdout}{result.stderr}"
    return result.stdout


def test_a_rendered_project_takes_a_dataset_with_awkward_headers(tmp_path: Path) -> None:
    """Switch a fresh project to other data (headers with spaces, hyphens, parentheses, a date
    and a time), as its README says, then run its own tests, prepare, train, evaluate, predict,
    bench and serve it."""
    path = render(tmp_path / "project", project_name="Own Data")
    odd_names_project(path)  # writes odd.csv and a dataset.toml that describes it

    def make(*targets: str) -> str:
        return make_in(path, *targets)

    make("test-fast")  # its own tests follow its dataset.toml, and pass on the new data
    make("prepare", "train", "evaluate")
    make("predict", "INPUT=odd.csv", "OUTPUT=scored.csv")
    scored = (path / "scored.csv").read_text().splitlines()
    assert scored[0].startswith(",".join(["species", *RENAMED.values()]))
    assert len(scored) == 345
    bench = make("bench", "QUICK=1")
    assert "x the floor" in bench
    assert "of I/O and model alone" in bench
    assert "of a plain script" in bench
    assert "## Serving `odd`" in bench  # the project's own model, by its name
    assert "/predict batch 1 " in bench
    assert "bare" not in bench  # the template's yardsticks stay in the template
    assert "MLServer" not in bench
    card = json.loads((path / "models" / "current" / "model.json").read_text())
    assert list(card["inputs"]) == [*RENAMED.values(), *DATED]
    with make_serve(path, "OWN_DATA_PORT") as url:
        status, body = post(f"{url}/predict", {"records": [card["example"]]})
        assert status == 200, body
        assert body["predictions"][0]["label"] in card["classes"]
        status, body = post(
            f"{url}/predict",
            {"records": [{**card["example"], "bill length (mm)": 500.0}]},
        )
        assert status == 422
        assert body["detail"] == [
            "column 'bill length (mm)': above the maximum 80; found 500.0 (record 0)"
        ]


def test_a_project_drafts_the_schema_of_dated_data_serves_dates_and_watches_drift(
    tmp_path: Path,
) -> None:
    """Data with a date and a time, from the file to the alarm: `make schema` writes the
    dataset.toml, then prepare, train, `/predict` with a date, batch predict, and `make drift`
    on a copy whose dates moved, which names that feature."""
    path = render(tmp_path / "project", project_name="Dated")
    given = odd_names_project(path).read_text()  # odd.csv has dates and times
    make_in(path, "schema", "INPUT=odd.csv", "TARGET=species", "OUTPUT=dataset.toml")
    assert (path / "dataset.toml.bak").read_text() == given
    make_in(path, "prepare", "train", "predict", "INPUT=odd.csv", "OUTPUT=scored.parquet")
    card = json.loads((path / "models" / "current" / "model.json").read_text())
    types = {feature["name"]: feature["type"] for feature in card["features"]}
    assert (types[DATED[0]], types[DATED[1]]) == ("date", "datetime")
    scored = pl.read_parquet(path / "scored.parquet")
    assert scored.height == 344
    assert (scored.schema[DATED[0]], scored.schema[DATED[1]]) == (
        pl.Date,
        pl.Datetime("us", "UTC"),
    )
    with make_serve(path, "DATED_PORT") as url:
        record = {**card["example"], DATED[0]: "2008-06-13", DATED[1]: "2008-06-13T09:30:00Z"}
        status, body = post(f"{url}/predict", {"records": [record]})
        assert status == 200, body
        assert body["predictions"][0]["label"] in card["classes"]
        status, body = post(f"{url}/predict", {"records": [{**record, DATED[0]: "2030-01-01"}]})
        assert status == 422
        latest = next(f["max"] for f in card["features"] if f["name"] == DATED[0])
        assert body["detail"] == [
            f"column '{DATED[0]}': after the maximum {latest}; found '2030-01-01' (record 0)"
        ]
    test = pl.read_parquet(path / "data" / "processed" / "current" / "test.parquet")
    test.with_columns(pl.col(DATED[0]).max()).write_parquet(path / "later.parquet")
    report = make_in(path, "drift", "INPUT=later.parquet").splitlines()
    drifted = [line for line in report if "drifted" in line and "│" in line]
    assert len(drifted) == 1, report
    assert DATED[0] in drifted[0]
    assert (path / "reports" / "drift.png").read_bytes().startswith(b"\x89PNG")
