"""Experiment tracking: with it on, train and evaluate leave a run with the card's metrics, hashes
and files in the store; with it off, nothing of MLflow is even imported."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, MODEL_FILE, load_card
from mlops_template.cli import app
from mlops_template.errors import UserError
from mlops_template.settings import ENV_PREFIX

from .conftest import PENGUINS_SCHEMA, ROOT
from .test_guarantees import STRACE
from .test_guarantees import _remote as remote
from .test_serving_live import free_port

mlflow = pytest.importorskip("mlflow", reason="the `track` extra is not installed")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv(f"{ENV_PREFIX}TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # artifacts go to ./mlruns beside the store
    return uri


def test_train_and_evaluate_log_one_run_with_metrics_hashes_and_files(
    store: str, prepared_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    common = ["--processed-dir", str(prepared_dir), "--model-dir", str(models), "--track"]
    trained = invoke("train", "--schema", str(PENGUINS_SCHEMA), *common)
    evaluated = invoke("evaluate", *common)
    version = current_version(models)
    card = load_card(version / CARD_FILE)
    mlflow.set_tracking_uri(store)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert f"tracked: run {run.info.run_id}" in trained
    assert f"tracked: run {run.info.run_id}" in evaluated  # the same run: the model's own
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == card.name
    tags = run.data.tags
    assert (tags["model_version"], tags["onnx_sha256"]) == (card.version, card.onnx_sha256)
    assert tags["dataset_sha256"] == card.dataset.source_sha256
    for name, value in card.metrics.items():
        assert run.data.metrics[name] == pytest.approx(value)
        assert run.data.metrics[f"evaluate.{name}"] == pytest.approx(value)
    assert run.data.params["model.type"] == card.model.type
    assert int(run.data.params["rows_train"]) == card.dataset.rows_train
    card_file = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=f"card/{CARD_FILE}", dst_path=str(tmp_path / "dl")
    )
    assert Path(card_file).read_bytes() == (version / CARD_FILE).read_bytes()
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert logged.source_run_id == run.info.run_id
    model = Path(mlflow.artifacts.download_artifacts(logged.model_uri, dst_path=str(tmp_path)))
    assert (model / MODEL_FILE).read_bytes() == (version / MODEL_FILE).read_bytes()  # the file
    flavours = mlflow.models.Model.load(str(model / "MLmodel"))
    assert "onnx" in flavours.flavors
    assert flavours.metadata["card"]["onnx_sha256"] == card.onnx_sha256
    plots = mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluation")
    assert [Path(a.path).suffix for a in plots] == [".png"]


def test_evaluating_a_model_trained_without_tracking_starts_its_own_run(
    store: str, prepared_dir: Path, trained_dir: Path
) -> None:
    invoke(
        "evaluate", "--processed-dir", str(prepared_dir), "--model-dir", str(trained_dir), "--track"
    )
    mlflow.set_tracking_uri(store)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    card = load_card(current_version(trained_dir) / CARD_FILE)
    assert run.data.tags["model_version"] == card.version
    assert set(run.data.metrics) == {f"evaluate.{name}" for name in card.metrics}


def test_an_unusable_store_is_one_error_line(
    prepared_dir: Path, trained_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}TRACKING_URI", "nosuchscheme://store")
    command = ["evaluate", "--processed-dir", str(prepared_dir), "--model-dir", str(trained_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "mlops_template", *command, "--track"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("error: tracking store nosuchscheme://store: "), done.stderr
    assert "hint: check the TRACKING_URI setting" in done.stderr
    assert "Traceback" not in done.stderr


def test_with_tracking_off_no_mlflow_module_is_loaded(prepared_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from mlops_template.cli import main\n"
        "sys.argv[0] = 'mlops-template'\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "loaded = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(loaded & {'mlflow', 'sqlalchemy', 'alembic'}))\n"
    )
    models = tmp_path / "models"
    for command in (
        ["train", "--schema", str(PENGUINS_SCHEMA)],
        ["evaluate"],
    ):
        where = ["--processed-dir", str(prepared_dir), "--model-dir", str(models)]
        done = subprocess.run(
            [sys.executable, "-c", code, *command, *where],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]", command
    assert not (tmp_path / "mlruns.db").exists()


def test_register_names_the_version_and_points_the_alias_at_it(
    store: str, prepared_dir: Path, tmp_path: Path
) -> None:
    common = ["--processed-dir", str(prepared_dir), "--model-dir", str(tmp_path / "models")]
    train = ["train", "--schema", str(PENGUINS_SCHEMA), *common, "--register", "penguins"]
    assert "registered: models:/penguins@candidate is version 1" in invoke(*train)
    mlflow.set_tracking_uri(store)
    served = Path(
        mlflow.artifacts.download_artifacts("models:/penguins@candidate", dst_path=str(tmp_path))
    )
    published = current_version(tmp_path / "models")
    assert (served / MODEL_FILE).read_bytes() == (published / MODEL_FILE).read_bytes()
    refused = CliRunner().invoke(app, [*train, "--alias", "v2"])
    assert isinstance(refused.exception, UserError), refused.output
    assert str(refused.exception).startswith("--alias 'v2': ")
    assert str(refused.exception).endswith("(version 2 of 'penguins' is registered, without it)")
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("penguins", "candidate").version) == "1"


@pytest.mark.e2e
@pytest.mark.skipif(STRACE is None, reason="needs strace (`.ci/run` installs it)")
def test_tracking_sends_nothing_beyond_loopback(
    store: str, prepared_dir: Path, tmp_path: Path
) -> None:
    """MLflow keeps its usage telemetry to itself only where it detects CI or a test run: the
    trace runs without either."""
    quiet = {"CI", "GITHUB_ACTIONS", "PYTEST_CURRENT_TEST"}
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    trace = tmp_path / "trace"
    strace = [STRACE or "strace", "-f", "-qq", "-e", "trace=%network", "-o", str(trace)]
    command = ["train", "--schema", str(PENGUINS_SCHEMA), "--processed-dir", str(prepared_dir)]
    where = ["--model-dir", str(tmp_path / "models"), "--register", "penguins"]
    done = subprocess.run(
        [*strace, sys.executable, "-m", "mlops_template", *command, *where],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    calls = trace.read_text().splitlines()
    assert any("socket(" in line for line in calls)  # the trace sees network calls at all
    assert [line for line in calls if remote(line)] == []


@pytest.mark.e2e
@pytest.mark.parametrize("stop", ["SIGTERM to make", "Ctrl-C"])
def test_track_ui_serves_on_its_port_and_stops_with_every_process(
    stop: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, f"{ENV_PREFIX}TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    ui = subprocess.Popen(
        ["make", "track-ui", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300  # the first use fetches MLflow's full package
        while True:
            assert ui.poll() is None, "make track-ui exited"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page,
            ):
                assert page.status == 200
                break
            assert time.monotonic() < deadline, "the UI did not answer"
            time.sleep(0.5)
        if stop == "Ctrl-C":
            os.killpg(ui.pid, signal.SIGINT)  # as a terminal sends it: to the whole group
        else:
            os.kill(ui.pid, signal.SIGTERM)  # make alone, as a supervisor sends it
        ui.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(ui.pid):
            assert time.monotonic() < deadline, "processes of the UI outlived it"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ui.pid, signal.SIGKILL)


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
