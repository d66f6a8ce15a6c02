"""Experiment tracking with MLflow (the `track` extra): a record of every training run.

Off by default; on with `train --track` / `evaluate --track`, or the `TRACK` setting
(`MLOPS_TEMPLATE_TRACK=true`). `train` logs one run: the model's parameters, the held-out
metrics, the card's hashes as tags, the card as an artifact, and the model as an MLflow Model
(the ONNX flavour, the very file, with the card as its metadata); `train --register NAME`
registers that model and points an alias (`candidate`) at the new version. `evaluate` adds
its metrics and plot to the run of the model it scored (or starts one, for a model trained
without tracking). The store is a local SQLite file by default (`sqlite:///mlruns.db`, artifacts
in `mlruns/`), or any MLflow tracking URI (`MLOPS_TEMPLATE_TRACKING_URI`); `make track-ui`
browses it.

The ONNX file and its card stay the deployable truth: a run records them, it never replaces
them. Nothing of MLflow is imported unless tracking is on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .card import CARD_FILE, MODEL_FILE, ModelCard
from .errors import MissingExtraError, UserError

__all__ = ["log_evaluation", "log_training"]

VERSION_TAG = "model_version"


@contextmanager
def _mlflow(uri: str, experiment: str) -> Iterator[Any]:
    """MLflow, pointed at the store and the experiment; a clear error where it cannot be."""
    # MLflow sends usage telemetry from every process that imports it unless this is set (it
    # stays quiet on its own only where it detects CI or a test run). Set it to false to opt in.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
    except ImportError as exc:
        raise MissingExtraError("experiment tracking", "track", exc.name) from None
    for name in ("mlflow", "alembic"):  # their start-up chatter; warnings still show
        logging.getLogger(name).setLevel(logging.WARNING)
    # uv's environments have no pip, which MLflow warns of while it writes a model's conda.yaml.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        yield mlflow
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(
            f"tracking store {uri}: {exc.message.strip().splitlines()[0]}",
            hint="check the TRACKING_URI setting (default sqlite:///mlruns.db)",
        ) from None


def _tags(card: ModelCard) -> dict[str, str]:
    return {
        VERSION_TAG: card.version,
        "onnx_sha256": card.onnx_sha256,
        "dataset": card.dataset.name,
        "dataset_sha256": card.dataset.source_sha256,
        "task": card.task,
        "estimator": card.estimator,
    }


def log_training(
    card: ModelCard,
    version_dir: Path,
    *,
    uri: str,
    experiment: str,
    register: str | None = None,
    alias: str = "candidate",
) -> tuple[str, str | None]:
    """Log a training run of `card`'s model, published in `version_dir`, with the model as an
    MLflow Model (ONNX flavour, the card as its metadata); with `register`, register it under
    that name and point `alias` at the new version. The run's id, and the version registered."""
    import onnx  # skl2onnx's own dependency: wherever training runs, it is there

    with _mlflow(uri, experiment) as mlflow, mlflow.start_run(run_name=card.version) as run:
        spec = card.model.model_dump(mode="json")
        mlflow.log_params(
            {f"model.{key}": value for key, value in spec.items()}
            | {
                "features": len(card.features),
                "rows_train": card.dataset.rows_train,
                "rows_test": card.dataset.rows_test,
                "onnx_opset": card.onnx_opset,
            }
        )
        mlflow.log_metrics(card.metrics)
        mlflow.set_tags(_tags(card))
        mlflow.log_artifact(str(version_dir / CARD_FILE), artifact_path="card")
        logged = mlflow.onnx.log_model(
            onnx.load_from_string((version_dir / MODEL_FILE).read_bytes()),
            name="model",
            metadata={"card": card.model_dump(mode="json")},
            registered_model_name=register,
        )
        version = logged.registered_model_version
        if register is not None:
            try:
                mlflow.MlflowClient().set_registered_model_alias(register, alias, version)
            except mlflow.exceptions.MlflowException as exc:
                raise UserError(
                    f"--alias {alias!r}: {exc.message.strip().splitlines()[0]} (version "
                    f"{version} of {register!r} is registered, without it)",
                    hint="an alias is letters, digits, _ and -, other than latest and v<number>",
                ) from None
        return str(run.info.run_id), None if version is None else str(version)


def log_evaluation(
    card: ModelCard, metrics: dict[str, float], plot: Path, *, uri: str, experiment: str
) -> str:
    """Add an evaluation to the run that trained `card`'s model (or to a new one); its id."""
    with _mlflow(uri, experiment) as mlflow:
        runs = mlflow.search_runs(
            filter_string=f"tags.{VERSION_TAG} = '{card.version}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        run_id = runs[0].info.run_id if runs else None
        with mlflow.start_run(run_id=run_id, run_name=card.version) as run:
            if run_id is None:
                mlflow.set_tags(_tags(card))
            mlflow.log_metrics({f"evaluate.{name}": value for name, value in metrics.items()})
            mlflow.log_artifact(str(plot), artifact_path="evaluation")
            return str(run.info.run_id)
