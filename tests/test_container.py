"""The serving image: checked without a Docker engine, by reading the Dockerfile and by running
its install and start commands on this machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_serving_live import free_port, get, post

DOCKERFILE = ROOT / "Dockerfile"


def instructions(stage: str | None = None) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, of one stage or all."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs: list[tuple[str, str]] = []
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
        if stage is None or current == stage:
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def env_of(stage: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in instructions(stage):
        if keyword == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                env[key] = value
    return env


def test_the_image_is_multi_stage_with_a_lean_runtime() -> None:
    stages = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(stages) == 2
    assert all("slim" in stage for stage in stages)
    runtime = instructions("runtime")
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert "pip install" not in runs
    assert "uv" not in runs
    syncs = [
        rest for keyword, rest in instructions("build") if keyword == "RUN" and "uv sync" in rest
    ]
    assert syncs
    extra = dict(
        re.findall(r"(\w+)=(\S+)", " ".join(r for k, r in instructions("build") if k == "ARG"))
    )
    assert extra["EXTRA"] == "serve"  # the default image serves; --build-arg EXTRA=dask: batch
    for sync in syncs:
        assert "--frozen" in sync
        assert "--no-dev" in sync
        assert '--extra "${EXTRA}"' in sync
        assert "--all-extras" not in sync
        assert "train" not in sync


def test_the_runtime_runs_as_a_numeric_non_root_user_with_exec_form_commands() -> None:
    runtime = dict(instructions("runtime"))
    user = runtime["USER"].split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user)
    cmd = json.loads(runtime["CMD"])
    assert cmd == ["mlops-template", "serve"]
    healthcheck = runtime["HEALTHCHECK"]
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert probe[:2] == ["python", "-c"]
    assert "/health/live" in probe[2]
    assert runtime["EXPOSE"] == "8000"


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    rules = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*"
    assert {"!src/", "!uv.lock", "!models/current", "!models/*/model.onnx"} <= set(rules)
    assert not any("data" in rule for rule in rules)


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.e2e
def test_the_image_commands_install_and_serve_outside_docker(
    trained_dir: Path, tmp_path: Path
) -> None:
    """The build stage's `uv sync`s, then the runtime's CMD and HEALTHCHECK, with its ENV."""
    app = tmp_path / "app"
    app.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, app)
    shutil.copytree(ROOT / "src", app / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for keyword, rest in instructions("runtime"):  # the model, as the image copies it
        if keyword == "COPY" and "--from" not in rest:
            *sources, target = [a for a in rest.split() if not a.startswith("--")]
            destination = Path(target.replace("/app", str(app)))
            destination.mkdir(parents=True, exist_ok=True)
            for source in sources:
                relative = Path(source).relative_to("models")
                shutil.copy(trained_dir / relative, destination)
    # `uv run` (so `make test`) names its own binary in UV; else PATH, else make's bootstrap.
    uv = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    build_env = {**os.environ, **env_of("build"), "UV_PROJECT_ENVIRONMENT": str(app / ".venv")}
    build_env.pop("VIRTUAL_ENV", None)
    for keyword, rest in instructions("build"):
        if keyword == "RUN" and "uv sync" in rest:
            command = rest[rest.index("uv sync") :].replace('"${EXTRA}"', "serve").split()
            subprocess.run(
                [uv, *command[1:]],
                cwd=app,
                env=build_env,
                check=True,
                capture_output=True,
                timeout=600,
            )
    venv_python = app / ".venv" / "bin" / "python"
    leaked = subprocess.run(
        [
            venv_python,
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('sklearn', 'skl2onnx', 'matplotlib', 'pytest') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert leaked.stdout.strip() == "[]"

    runtime = dict(instructions("runtime"))
    port = free_port()
    run_env = {
        k: v.replace("/app", str(app)).replace("$PATH", os.environ["PATH"])
        for k, v in env_of("runtime").items()
    }
    run_env = {
        **os.environ,
        **run_env,
        "MLOPS_TEMPLATE_HOST": "127.0.0.1",
        "MLOPS_TEMPLATE_PORT": str(port),
    }
    run_env.pop("VIRTUAL_ENV", None)
    name = "mlops-template"
    assert shutil.which(name, path=run_env["PATH"]) == str(app / ".venv" / "bin" / name)
    server = subprocess.Popen(
        json.loads(runtime["CMD"]),
        cwd=app,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        healthcheck = runtime["HEALTHCHECK"]
        probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
        probe[0] = str(venv_python)
        for _ in range(600):  # up to 60 s
            if subprocess.run(probe, env=run_env, capture_output=True).returncode == 0:
                break
            assert server.poll() is None
            time.sleep(0.1)
        else:
            pytest.fail("the HEALTHCHECK command never passed")
        card = json.loads((app / "models" / "model.json").read_text())
        status, body = post(f"http://127.0.0.1:{port}/predict", {"records": [card["example"]]})
        assert status == 200
        assert body["predictions"][0]["label"] in card["classes"]
        assert get(f"http://127.0.0.1:{port}/health/ready")[0] == 200
        # The installed package carries its docs assets (package data reaches the image).
        assert get(f"http://127.0.0.1:{port}/static/swagger-ui/swagger-ui-bundle.js")[0] == 200
        # [if demo]
        import urllib.request

        wasm = "/static/onnxruntime-web/ort-wasm-simd-threaded.wasm"  # vendored, gzipped
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{wasm}", timeout=10) as runtime:
            assert runtime.read(4) == b"\0asm"  # unpacked for a client that asks for no gzip
        # [end demo]
    finally:
        server.terminate()
        server.wait(timeout=20)
