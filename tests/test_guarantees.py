"""The README's promises, each checked across processes: training is reproducible byte for
byte, a set of outputs switches whole even when the writer is killed, and batch prediction
streams in bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_template._fs import atomic_path, current_version
from mlops_template.card import MODEL_FILE

from .conftest import PENGUINS, PENGUINS_SCHEMA
from .test_cli import cli

pytestmark = pytest.mark.e2e


def run(*code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "\n".join(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dataset.toml").write_text(PENGUINS_SCHEMA.read_text())
    (tmp_path / "penguins.csv").write_text(PENGUINS.read_text())
    assert cli("prepare", cwd=tmp_path).returncode == 0
    return tmp_path


@pytest.mark.parametrize("model", ["linear", "random_forest"])
def test_two_processes_train_the_same_onnx_file(project: Path, model: str) -> None:
    schema = project / "dataset.toml"
    schema.write_text(schema.read_text() + f'\n[model]\ntype = "{model}"\n')
    digests = []
    for seed in ("1", "2"):  # Python's hash seed differs between processes; so may set order
        result = cli("train", cwd=project, env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        onnx = current_version(project / "models") / MODEL_FILE
        digests.append(hashlib.sha256(onnx.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


KILL_AFTER_MODEL = """
import os, signal
from pathlib import Path
import mlops_template.train as train
from mlops_template.schema import RandomForestModel, load_schema

real = Path.write_text

def write_text(self, *args, **kwargs):
    if self.name == "model.json":  # model.onnx is written; die before its card
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)

Path.write_text = write_text
schema = load_schema(Path("dataset.toml"))
forest = RandomForestModel(type="random_forest", n_estimators=10)
forested = schema.model_copy(update={"model": forest})
train.train_model(forested, Path("data/processed"), Path("models"))
"""


def test_a_kill_between_the_two_writes_leaves_the_previous_pair(project: Path) -> None:
    assert cli("train", cwd=project).returncode == 0
    before = current_version(project / "models")
    pair = {p.name: p.read_bytes() for p in before.iterdir()}
    killed = run(KILL_AFTER_MODEL, cwd=project)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert current_version(project / "models") == before
    assert {p.name: p.read_bytes() for p in before.iterdir()} == pair
    assert list((project / "models").glob(".tmp-*"))  # the dead run's half-written set
    served = cli("info", cwd=project)
    assert served.returncode == 0, served.stderr
    # The next run cleans up what the killed one left, and publishes a whole new pair.
    assert cli("train", cwd=project).returncode == 0
    assert not list((project / "models").glob(".tmp-*"))
    after = current_version(project / "models")
    assert after != before
    card = json.loads((after / "model.json").read_text())
    assert card["onnx_sha256"] == hashlib.sha256((after / MODEL_FILE).read_bytes()).hexdigest()


KILL_AFTER_SPLITS = """
import os, signal
from pathlib import Path
import mlops_template.data as data
from mlops_template.schema import load_schema

real = Path.write_text

def write_text(self, *args, **kwargs):
    if self.name == "manifest.json":  # both splits are written; die before the manifest
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)

Path.write_text = write_text
data.prepare_dataset(load_schema(Path("dataset.toml")), Path("data/processed"))
"""


def test_a_kill_during_prepare_leaves_the_previous_set(project: Path) -> None:
    before = current_version(project / "data" / "processed")
    files = {p.name: p.read_bytes() for p in before.iterdir()}
    assert run(KILL_AFTER_SPLITS, cwd=project).returncode == -signal.SIGKILL
    assert current_version(project / "data" / "processed") == before
    assert {p.name: p.read_bytes() for p in before.iterdir()} == files
    assert cli("train", cwd=project).returncode == 0


KILL_AT_PUBLISH = """
import os, signal
from pathlib import Path
import mlops_template.train as train
from mlops_template.schema import load_schema

real = Path.replace

def replace(self, target):
    if self.name.startswith(".tmp-link-"):  # the version folder is named; die before `current`
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, target)

Path.replace = replace
train.train_model(load_schema(Path("dataset.toml")), Path("data/processed"), Path("models"))
"""


def test_a_kill_between_the_two_publishing_steps_leaves_nothing_the_next_run_keeps(
    project: Path,
) -> None:
    """A run killed after naming its version folder, before switching `current` to it: the
    next run removes that folder and the link it was making, so the versions kept for a
    rollback are the published ones."""
    published = []
    for _ in range(2):
        assert cli("train", cwd=project).returncode == 0
        published.append(current_version(project / "models").name)
    assert run(KILL_AT_PUBLISH, cwd=project).returncode == -signal.SIGKILL
    models = project / "models"
    assert current_version(models).name == published[-1]
    assert len([p for p in models.iterdir() if p.name[:1].isdigit()]) == 3  # one unpublished
    assert list(models.glob(".tmp-link-*"))
    assert cli("train", cwd=project).returncode == 0
    published.append(current_version(models).name)
    assert sorted(p.name for p in models.iterdir() if p.name[:1].isdigit()) == published
    assert not list(models.glob(".tmp-*"))


KILL_AT_RENAME = """
import os, signal, sys
from pathlib import Path
from mlops_template.batch import predict_file
from mlops_template.inference import OnnxModel

real = Path.replace

def replace(self, target):
    if self.name.endswith(".tmp"):  # the predictions are written; die before they are renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, target)

Path.replace = replace
predict_file(OnnxModel.load(Path("models")), Path("penguins.csv"), Path("out.parquet"))
"""


def test_a_predict_killed_at_its_rename_leaves_a_file_the_next_run_removes(
    project: Path,
) -> None:
    assert cli("train", cwd=project).returncode == 0
    assert run(KILL_AT_RENAME, cwd=project).returncode == -signal.SIGKILL
    assert list(project.glob(".out.parquet.*.tmp"))
    assert not (project / "out.parquet").exists()
    result = cli("predict", "penguins.csv", "--output", "out.parquet", cwd=project)
    assert result.returncode == 0, result.stderr
    assert not list(project.glob(".out.parquet.*"))
    assert (project / "out.parquet").exists()


def test_a_live_writer_keeps_its_temporary_file_when_another_writes_the_same_target(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target) as first:
        first.write_text("first")
        with atomic_path(target) as second:
            second.write_text("second")
        assert first.read_text() == "first"
    assert target.read_text() == "first"


# The peak resident size of this process image: VmHWM, since ru_maxrss survives exec and so
# may report the (large) test process that forked it.
PEAK = """
import re, sys
from pathlib import Path
from mlops_template.batch import predict_file
from mlops_template.inference import OnnxModel
predict_file(OnnxModel.load(Path("models")), Path(sys.argv[1]), Path(sys.argv[2]))
status = Path("/proc/self/status").read_text()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def test_batch_predict_memory_does_not_grow_with_the_rows(project: Path) -> None:
    assert cli("train", cwd=project).returncode == 0
    base = pl.read_csv(PENGUINS, null_values=["NA"])
    rng = np.random.default_rng(0)
    peaks = {}
    for rows in (1_000_000, 3_000_000):
        source = project / f"in-{rows}.parquet"
        base[rng.integers(0, base.height, rows)].write_parquet(source)
        result = subprocess.run(
            [sys.executable, "-c", PEAK, str(source), str(project / f"out-{rows}.parquet")],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        peaks[rows] = int(result.stdout.split()[-1])
        assert (
            pl.scan_parquet(project / f"out-{rows}.parquet").select(pl.len()).collect().item()
            == rows
        )
    # Three times the rows, about the same memory: the file is never held whole (a Parquet
    # row group, 262,144 rows, is the most that is: memory levels off once files are larger).
    assert peaks[3_000_000] - peaks[1_000_000] < 128, peaks


def test_outputs_are_readable_by_another_user_under_the_usual_umask(project: Path) -> None:
    """Under umask 022, what train, prepare and predict publish is 0755 (folders) and 0644
    (files), as any file the user writes: a server or job running as another user reads it."""
    code = (
        "import os, sys, runpy",
        "os.umask(0o022)",
        "sys.argv = ['mlops_template', *sys.argv[1:]]",
        "runpy.run_module('mlops_template', run_name='__main__')",
    )
    for args in (["prepare"], ["train"], ["predict", "penguins.csv", "-o", "out/scored.parquet"]):
        result = subprocess.run(
            [sys.executable, "-c", "\n".join(code), *args],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    version = current_version(project / "models")
    processed = current_version(project / "data" / "processed")
    published = [version, processed, *version.iterdir(), *processed.iterdir()]
    published.append(project / "out" / "scored.parquet")
    modes = {p.relative_to(project).as_posix(): oct(p.stat().st_mode & 0o777) for p in published}
    wanted = {name: oct(0o755 if (project / name).is_dir() else 0o644) for name in modes}
    assert modes == wanted


STRACE = shutil.which("strace")
# A connect or send to an address that is not this machine's loopback, as strace prints it.
_REMOTE = re.compile(
    r'(?:connect|sendto|sendmsg)\(.*sa_family=AF_INET6?.*?(?:inet_addr|inet_pton)\([^"]*"([^"]+)"'
)


@pytest.mark.skipif(STRACE is None, reason="needs strace (`.ci/run` installs it)")
def test_no_command_or_server_talks_to_anything_but_loopback(project: Path) -> None:
    """Train, predict and a served request, each traced for every network call it makes (DNS
    lookups included): none leaves the machine, onnxruntime's telemetry included."""
    traces = project / "traces"
    traces.mkdir()
    cli_command = [sys.executable, "-m", "mlops_template"]

    def traced() -> list[str]:
        return [STRACE or "strace", "-f", "-qq", "-e", "trace=%network"]

    for name, args in {
        "train": ["train"],
        "predict": ["predict", "penguins.csv", "-o", "scored.parquet"],
    }.items():
        command = [*traced(), "-o", str(traces / name), *cli_command, *args]
        result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = [*traced(), "-o", str(traces / "serve"), *cli_command]
    server = subprocess.Popen(
        [*serve, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=5) as card:
                    example = json.loads(card.read())["example"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"records": [example]}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # strace and the server it traces
        server.wait(timeout=60)
    calls = [line for trace in traces.iterdir() for line in trace.read_text().splitlines()]
    assert any(f"htons({port})" in line for line in calls)  # the trace sees the server bind
    remote = [line for line in calls if _remote(line)]
    assert remote == []


def _remote(line: str) -> bool:
    found = _REMOTE.search(line)
    return found is not None and found.group(1) not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")
