"""Serve the app with uvicorn: `run(settings)`, behind the CLI's `serve` and `make serve`."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn

from ..inference import OnnxModel
from ..settings import ENV_PREFIX, Settings
from .logs import logging_config

__all__ = ["run"]

_FACTORY = f"{__name__.rsplit('.', 1)[0]}.app:create_app_from_env"


def run(settings: Settings, *, banner: str | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C, then let requests in flight finish.

    The model is loaded once here first, so that a missing or damaged model stops the command
    with one clear error before any port is opened or worker started.
    """
    OnnxModel.load(settings.model_dir, threads=settings.threads)
    if banner:
        print(banner, file=sys.stderr, flush=True)
    # Workers build their app from the environment: hand them these settings, CLI options included.
    for name, value in settings.model_dump(mode="json").items():
        os.environ[f"{ENV_PREFIX}{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    # uvicorn drains on SIGTERM or Ctrl-C, then raises the signal again so that the exit status
    # says why it stopped. A drain that finished is a clean stop: exit 0 (`make serve` and
    # process managers then report no error).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    uvicorn.run(
        _FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="auto",  # uvloop where installed
        http=_protocol(),  # httptools with bounds on request heads, where installed
        access_log=False,  # the middleware counts every request; errors are logged
        log_config=logging_config(settings.log_level),
        timeout_graceful_shutdown=settings.graceful_timeout,
        server_header=False,
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _protocol() -> Any:
    try:
        from .protocol import BoundedHttpToolsProtocol
    except ImportError:  # no httptools (Windows): uvicorn's h11 protocol
        return "h11"
    return BoundedHttpToolsProtocol
