"""Serve the app with uvicorn: `run(settings)`, behind the CLI's `serve` and `make serve`."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from ..errors import Error
from ..inference import OnnxModel
from ..settings import ENV_PREFIX, Settings
from .app import create_app
from .logs import logging_config

__all__ = ["configure_protocol", "run"]

_FACTORY = f"{__name__.rsplit('.', 1)[0]}.app:create_app_from_env"
_MODEL_DIR = f"{ENV_PREFIX}MODEL_DIR"
log = logging.getLogger(__name__.rsplit(".", 1)[0])


def run(settings: Settings, *, banner: str | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C, then let requests in flight finish.

    The model is loaded here first, so that a missing or damaged model stops the command with
    one clear error before any port is opened or worker started. One process serves that very
    app; several workers each load the version resolved here, so a worker started later (a
    respawn after a crash) serves the same model as the others, not one trained since. With
    several workers, SIGHUP resolves the model folder again and replaces the workers one by one.
    """
    configured = settings.model_dir
    if settings.workers == 1:
        configure_protocol(settings)
        app: Any = create_app(settings)
    else:
        model = OnnxModel.load(settings.model_dir, threads=settings.threads)
        settings = settings.model_copy(update={"model_dir": model.path.parent})
        app = _FACTORY
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
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "loop": "auto",  # uvloop where installed
        "http": _protocol(),  # httptools with bounds on request heads, where installed
        "access_log": False,  # the middleware counts every request; errors are logged
        "log_config": logging_config(settings.log_level),
        "timeout_graceful_shutdown": settings.graceful_timeout,
        "server_header": False,
    }
    if settings.workers == 1:
        # One process cannot bring up its replacement before it stops: say so rather than die.
        signal.signal(signal.SIGHUP, _reload_needs_workers)
        uvicorn.run(app, **options)
        return
    # uvicorn's supervisor, as `uvicorn.run` starts it, replaces every worker on SIGHUP, each new
    # one ready before the old one drains. Pin the newly trained version first, so that the new
    # workers all load it.
    config = uvicorn.Config(app, factory=True, **options)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    restart = signal.getsignal(signal.SIGHUP)
    if callable(restart):
        signal.signal(
            signal.SIGHUP,
            lambda signum, frame: _reload(configured, settings, restart, signum, frame),
        )
    supervisor.run()


def _reload(
    configured: Path, settings: Settings, restart: Any, signum: int, frame: FrameType | None
) -> None:
    """Check the model `configured` names now, pin it for the workers, then let them restart."""
    try:
        model = OnnxModel.load(configured, threads=settings.threads)
    except Error as exc:
        log.error("reload refused, still serving %s: %s", os.environ[_MODEL_DIR], exc)
        return
    log.info("reloading: every worker is replaced by one serving %s", model.path.parent)
    os.environ[_MODEL_DIR] = str(model.path.parent)
    restart(signum, frame)


def _reload_needs_workers(signum: int, frame: FrameType | None) -> None:
    log.warning(
        "SIGHUP ignored: a reload needs --workers 2 or more (one serves while another restarts);"
        " restart this server to serve a newly trained model"
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def configure_protocol(settings: Settings) -> None:
    """Set the bounds on request heads for this process's connections (each worker's own)."""
    try:
        from .protocol import configure
    except ImportError:  # no httptools (Windows): uvicorn's h11 protocol, with its own limits
        return
    configure(settings.max_head_bytes, settings.max_headers, settings.head_timeout)


def _protocol() -> Any:
    try:
        from .protocol import HeadLimits
    except ImportError:  # no httptools (Windows): uvicorn's h11 protocol
        return "h11"
    return HeadLimits
