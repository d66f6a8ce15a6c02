"""Runtime settings: one class, read from the environment and `.env`, built only at the edges.

Every variable carries the package's name, upper-cased, as a prefix (`<PACKAGE>_PORT=9000`).
CLI options beat environment variables, which beat `.env`, which beats the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ENV_PREFIX", "Settings"]

ENV_PREFIX = __name__.split(".")[0].upper() + "_"


class Settings(BaseSettings):
    """Where the data and the model live, and how the server runs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True, protected_namespaces=()
    )

    schema_path: Path = Field(Path("dataset.toml"), description="The dataset schema file")
    processed_dir: Path = Field(Path("data/processed"), description="Where `prepare` writes")
    model_dir: Path = Field(
        Path("models"), description="Where `train` writes model.onnx and model.json"
    )
    # [if tracking]
    track: bool = Field(
        False, description="Log train and evaluate runs to MLflow (needs the `track` extra)"
    )
    tracking_uri: str = Field(
        "sqlite:///mlruns.db", description="The MLflow tracking store (any MLflow URI)"
    )
    experiment: str | None = Field(
        None, description="The MLflow experiment (default: the dataset's name)"
    )
    # [end tracking]
    host: str = Field("127.0.0.1", description="Address the server binds; 0.0.0.0 in a container")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="Server processes")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads per process")
    max_batch_rows: int = Field(4096, ge=1, description="Most rows in one prediction request")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body")
    max_buffered_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Most bytes of request bodies being received at once per process; more get 503",
    )
    max_concurrency: int = Field(
        64, ge=1, description="Requests handled at once per process; more get 503 at once"
    )
    max_head_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request line and headers; more get 431"
    )
    max_headers: int = Field(100, ge=8, description="Most request headers; more get 431")
    head_timeout: float = Field(
        10.0, gt=0, description="Seconds a client gets to send a request's headers; then 408"
    )
    body_timeout: float = Field(
        10.0, gt=0, description="Seconds a client gets to send a request's body; then 408"
    )
    graceful_timeout: int = Field(
        30, ge=0, description="Seconds that requests in flight get to finish after SIGTERM"
    )
    drain_seconds: float = Field(
        0.5,
        ge=0,
        description="Seconds after SIGTERM that the server still takes in connections already "
        "made (longer while they still arrive, up to five times this)",
    )
    batching: bool = Field(True, description="Coalesce concurrent requests into one model call")
    drift_window: int = Field(
        1000,
        ge=0,
        description="Rows scored last whose drift from the training data /metrics reports, per "
        "feature (0: none)",
    )
    drift_threshold: float = Field(
        0.25, gt=0, description="Drift (population stability index) above which a feature is logged"
    )
    model_download: bool = Field(
        False,
        description="Serve the ONNX file at GET /model.onnx, for clients that score it themselves",
    )
    otel: bool = Field(
        False,
        description="FastAPI's OpenTelemetry tracing and metrics, for an app with an OTel SDK",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_requests: bool = Field(False, description="Log every request (errors are always logged)")
