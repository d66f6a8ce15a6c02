"""The container engine the image and devcontainer tests drive: Docker or Podman."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest


def _engine() -> list[str]:
    """$ENGINE (`make test-containers` sets it), else Docker where its daemon answers, else
    Podman (daemonless)."""
    if os.environ.get("ENGINE"):
        return shlex.split(os.environ["ENGINE"])
    docker = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True)
    return ["docker"] if docker and docker.returncode == 0 else ["podman"]


ENGINE = _engine()
# The marks of a module of such tests: `make test` leaves them to `make test-containers`.
MARKS = [
    pytest.mark.container,
    pytest.mark.skipif(
        shutil.which(ENGINE[0]) is None, reason=f"needs {ENGINE[0]} (or ENGINE= another engine)"
    ),
]


def engine(*args: str, check: bool = True, timeout: float = 120) -> str:
    """Run the engine; its standard output, stripped. A failure names the command."""
    done = subprocess.run(
        [*ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(ENGINE)} {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()
