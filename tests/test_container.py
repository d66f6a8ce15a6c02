"""The images, built by `make image` and run for real: `make test-containers` (Docker or Podman).

They run as an operator runs them: read-only root, the image's own user, no network but
loopback for the traced run, stopped by SIGTERM.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_template.inference import OnnxModel

from .conftest import ROOT
from .containers import ENGINE, MARKS, engine
from .test_serving_live import free_port, get, post

MODELS = ROOT / "models"
GRACE_SECONDS = 30  # the Deployment's terminationGracePeriodSeconds, Docker's `stop -t`
pytestmark = MARKS


def build(extra: str | None = None) -> Iterator[str]:
    """An image made by `make image`, removed afterwards; its size goes to the report."""
    tag = f"localhost/image-test-{extra or 'serve'}:{uuid.uuid4().hex[:8]}"
    variables = [f"IMAGE={tag}", f"ENGINE={' '.join(ENGINE)}"] + ([f"EXTRA={extra}"] * bool(extra))
    done = subprocess.run(
        ["make", "image", *variables], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    size = int(engine("image", "inspect", "--format", "{{.Size}}", tag))
    print(f"{tag}: {size / 1e6:.0f} MB")
    yield tag
    engine("image", "rm", "--force", tag, check=False)


@pytest.fixture(scope="module")
def serving_image() -> Iterator[str]:
    yield from build()


@pytest.fixture
def container(serving_image: str) -> Iterator[tuple[str, str]]:
    """The serving image running read-only, its port on this machine's loopback: (name, url)."""
    name, port = f"image-test-{uuid.uuid4().hex[:8]}", free_port()
    engine("run", "--detach", "--read-only", "--name", name, "--publish",
           f"127.0.0.1:{port}:8000", serving_image)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(name, url)
        yield name, url
    finally:
        engine("rm", "--force", name, check=False)


def wait_ready(name: str, url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while get_or_none(f"{url}/health/ready") != 200:
        state = engine("inspect", "--format", "{{.State.Status}}", name, check=False)
        assert state in ("created", "running"), engine("logs", name, check=False)
        assert time.monotonic() < deadline, "not ready: " + engine("logs", name, check=False)
        time.sleep(0.2)


def get_or_none(url: str) -> int | None:
    try:
        return get(url, timeout=2)[0]
    except OSError:
        return None


def local_answer(example: dict[str, object]) -> dict[str, object]:
    """What this machine's package answers for one record, with the model the image carries."""
    model = OnnxModel.load(MODELS)
    prediction = model.predict({key: [value] for key, value in example.items()})
    if prediction.values is not None:
        return {"value": float(prediction.values[0])}
    assert prediction.labels is not None
    assert prediction.probabilities is not None
    classes = model.card.classes or ()
    return {
        "label": prediction.labels[0],
        "probabilities": dict(zip(classes, prediction.probabilities[0].tolist(), strict=True)),
    }


def test_the_serving_image_answers_as_the_package_does(container: tuple[str, str]) -> None:
    _, url = container
    status, card = get(f"{url}/model")
    example = json.loads(card)["example"]
    status, body = post(f"{url}/predict", {"records": [example]})
    assert status == 200, body
    answer, local = body["predictions"][0], local_answer(example)
    assert answer.keys() == local.keys()
    if "label" in local:
        assert answer["label"] == local["label"]
        assert answer["probabilities"] == pytest.approx(local["probabilities"], abs=1e-6)
    else:
        assert answer["value"] == pytest.approx(local["value"], rel=1e-6)
    # The docs' assets are package data: they reach the image.
    assert get(f"{url}/static/swagger-ui/swagger-ui-bundle.js")[0] == 200


def test_the_serving_image_runs_read_only_as_its_own_user_with_no_build_tools(
    container: tuple[str, str],
) -> None:
    name, _ = container
    assert engine("exec", name, "id", "-u") == "10001"
    refused = subprocess.run([*ENGINE, "exec", name, "touch", "/app/x"], capture_output=True)
    assert refused.returncode != 0  # the root filesystem is read-only
    tools = "('sklearn', 'skl2onnx', 'pytest', 'uv', 'pip')"
    script = f"import importlib.util as u; print([m for m in {tools} if u.find_spec(m)])"
    found = engine("exec", name, "python", "-c", script)
    assert found == "[]"
    assert engine("exec", name, "printenv", "ORT_DISABLE_TELEMETRY") == "1"
    # Only the environment and the model: no data, no tests, no sources beside the package.
    assert engine("exec", name, "ls", "-A", "/app").split() == [".venv", "models"]


def test_the_healthcheck_the_image_declares_passes(container: tuple[str, str]) -> None:
    name, _ = container
    declared = json.loads(engine("inspect", "--format", "{{json .Config.Healthcheck}}", name))
    kind, *command = declared["Test"]
    assert kind == "CMD"
    assert subprocess.run([*ENGINE, "exec", name, *command], timeout=30).returncode == 0


def test_sigterm_stops_the_server_cleanly_within_the_grace_period(
    container: tuple[str, str],
) -> None:
    name, _ = container
    started = time.monotonic()
    engine("stop", "--time", str(GRACE_SECONDS), name, timeout=GRACE_SECONDS + 30)
    assert time.monotonic() - started < GRACE_SECONDS
    assert engine("inspect", "--format", "{{.State.ExitCode}}", name) == "0"


# [if dask]
@pytest.fixture(scope="module")
def batch_image() -> Iterator[str]:
    yield from build("dask")


def test_the_batch_image_scores_a_file_as_the_package_does(
    batch_image: str, tmp_path: Path
) -> None:
    import sys

    import polars as pl
    from polars.testing import assert_frame_equal

    source = ROOT / "data" / "processed" / "current" / "test.parquet"
    if not source.exists():
        prepare = [sys.executable, "-m", "mlops_template", "prepare"]
        subprocess.run(prepare, cwd=ROOT, capture_output=True, check=True, timeout=300)
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    outputs.chmod(0o777)  # the image's user writes here
    shutil.copy(source, inputs / "input.parquet")
    engine("run", "--rm", "--read-only", "--network=none", "--no-healthcheck",
           "--volume", f"{inputs}:/data/in:ro", "--volume", f"{outputs}:/data/out", batch_image,
           "mlops-template", "predict", "/data/in/input.parquet",
           "--output", "/data/out/scored.parquet", timeout=300)  # fmt: skip
    local = tmp_path / "local.parquet"
    cli = [sys.executable, "-m", "mlops_template"]
    done = subprocess.run(
        [*cli, "predict", str(source), "--output", str(local)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ours, theirs = pl.read_parquet(local), pl.read_parquet(outputs / "scored.parquet")
    assert_frame_equal(theirs, ours, abs_tol=1e-6)


# [end dask]
# A connect or send to an address that is not loopback, as strace prints it.
_REMOTE = re.compile(r'(?:connect|sendto|sendmsg)\(.*sa_family=AF_INET6?.*?"([^"]+)"')


@pytest.mark.skipif(
    ENGINE[0] != "podman" or shutil.which("strace") is None,
    reason="needs Podman and strace: a daemonless engine runs the container as a child to trace",
)
def test_the_serving_image_talks_to_nothing_but_loopback(
    serving_image: str, tmp_path: Path
) -> None:
    """The server and a prediction traced for every network call, DNS lookups included."""
    name, trace = f"image-test-{uuid.uuid4().hex[:8]}", tmp_path / "trace"
    traced = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=%network", "-o", str(trace),
         *ENGINE, "run", "--rm", "--network=none", "--name", name, serving_image],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        script = (
            "import json, urllib.request as u, time\n"
            "for _ in range(300):\n"
            "    try: card = json.load(u.urlopen('http://127.0.0.1:8000/model')); break\n"
            "    except OSError: time.sleep(0.2)\n"
            "body = json.dumps({'records': [card['example']]}).encode()\n"
            "r = u.Request('http://127.0.0.1:8000/predict', body, "
            "{'content-type': 'application/json'})\n"
            "print(u.urlopen(r).status)\n"
        )
        for _ in range(300):  # until the engine has made the container
            if subprocess.run([*ENGINE, "exec", name, "true"], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        assert engine("exec", name, "python", "-c", script, timeout=90) == "200"
    finally:
        engine("stop", "--time", str(GRACE_SECONDS), name, check=False, timeout=60)
        traced.wait(timeout=60)
    calls = trace.read_text().splitlines()
    assert any("htons(8000)" in line for line in calls)  # the trace reaches the server
    assert [line for line in calls if _remote(line)] == []


def _remote(line: str) -> bool:
    found = _REMOTE.search(line)
    return found is not None and found.group(1) not in ("127.0.0.1", "::1", "0.0.0.0", "::")
