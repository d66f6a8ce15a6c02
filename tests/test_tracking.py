"""Experiment tracking: with it on, train and evaluate leave a run with the card's metrics, hashes
and files in the store; with it off, nothing of MLflow is even imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, MODEL_FILE, load_card
from mlops_template.cli import app
from mlops_template.settings import ENV_PREFIX

from .conftest import PENGUINS_SCHEMA

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
    for name in (MODEL_FILE, CARD_FILE):  # the deployable files, byte for byte
        logged = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=f"model/{name}", dst_path=str(tmp_path / "dl")
        )
        assert Path(logged).read_bytes() == (version / name).read_bytes()
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
