"""The server under a bounded local load, with `/predict` and v2, at batch 1 and 1024.

Each server runs on the same `model.onnx` as one process with one worker pinned to core 0. The
template's own repository adds its yardsticks where their files are present (a project does not
carry them): the bare floor (`benchmarks/reference.py`: orjson, numpy columns, one onnxruntime
call, no checks) and MLServer 1.7.1 with a minimal custom runtime
(`benchmarks/mlserver_runtime.py`), installed by uv in an environment of its own under `.bench/`
(skipped, and said so, when that install fails). The load generator is this process, pinned to
core 1, talking to 127.0.0.1 only; every run is bounded in time. Each figure is the median of
alternating rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, ModelCard, load_card

DURATION = 5  # seconds per load run
ROUNDS = 3
CONNECTIONS = 16
MLSERVER = "mlserver==1.7.1"
BENCH_DIR = Path(".bench")


@dataclass(frozen=True)
class Scenario:
    """One kind of request: the protocol and the rows in each request."""

    protocol: str  # "predict" or "v2"
    rows: int

    @property
    def label(self) -> str:
        path = "/predict" if self.protocol == "predict" else "v2 infer"
        return f"{path} batch {self.rows}"


PREDICT_1, PREDICT_1024 = Scenario("predict", 1), Scenario("predict", 1024)
V2_1, V2_1024 = Scenario("v2", 1), Scenario("v2", 1024)
SERVES = {
    "ours": (PREDICT_1, PREDICT_1024, V2_1, V2_1024),
    "bare": (PREDICT_1, PREDICT_1024),
    "mlserver": (V2_1, V2_1024),
}
# The yardsticks, measured where their files are (the template's own repository).
YARDSTICKS = {
    "bare": Path(__file__).with_name("reference.py"),
    "mlserver": Path(__file__).with_name("mlserver_runtime.py"),
}


def _present(name: str) -> bool:
    return name not in YARDSTICKS or YARDSTICKS[name].is_file()


@dataclass(frozen=True)
class Result:
    """One load run: requests per second, latency percentiles (ms), failures."""

    rps: float
    p50_ms: float
    p99_ms: float
    failures: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> list[str]:
    """A command prefix that pins a process to `core`, where the machine has more than one."""
    return (
        ["taskset", "-c", str(core)]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else []
    )


@contextlib.contextmanager
def _server(
    command: list[str], port: int, env: dict[str, str], cwd: Path | None = None
) -> Iterator[None]:
    """A server process, up once its port answers; stopped (SIGTERM, then SIGKILL) after."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"{command[0]} did not start: {output}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    time.sleep(0.2)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _client(port: int, request: bytes, connections: int, duration: float) -> Result:
    """A bounded keep-alive HTTP/1.1 load: `connections` clients, each sending `request` and
    reading the whole answer before the next, for `duration` seconds."""
    latencies: list[float] = []
    failures = 0
    stop = time.monotonic() + duration

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < stop:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            if length is None:  # no chunked answers from these servers: count it and stop
                failures += 1
                break
            await reader.readexactly(int(length.group(1)))
            latencies.append(time.perf_counter() - start)
            failures += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    began = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(connections))), timeout=duration + 30
    )
    elapsed = time.monotonic() - began
    if not latencies:
        return Result(0.0, float("nan"), float("nan"), failures)
    latencies.sort()
    return Result(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1e3,
        latencies[int(len(latencies) * 0.99)] * 1e3,
        failures,
    )


def _run_client(port: int, request: bytes, duration: float) -> Result:
    try:
        import uvloop
    except ImportError:  # a slower client, the same bounds
        return asyncio.run(_client(port, request, CONNECTIONS, duration))
    return uvloop.run(_client(port, request, CONNECTIONS, duration))


def _requests(card: ModelCard) -> dict[tuple[str, Scenario], bytes]:
    """The raw HTTP request of every server and scenario, from the card's example row."""
    example = card.example or {}
    out: dict[tuple[str, Scenario], bytes] = {}
    for server, scenarios in SERVES.items():
        for scenario in scenarios:
            n = scenario.rows
            if scenario.protocol == "predict":
                path, body = "/predict", orjson.dumps({"records": [example] * n})
            else:
                path = f"/v2/models/{card.name}/infer"
                inputs = [
                    {
                        "name": f.name,
                        "shape": [n],
                        "datatype": "FP32" if f.is_numeric else "BYTES",
                        "data": [example[f.name]] * n,
                    }
                    for f in card.features
                ]
                body = orjson.dumps({"inputs": inputs})
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            out[server, scenario] = head.encode() + body
    return out


def _mlserver_env() -> tuple[Path | None, str]:
    """MLServer's own environment (made once by uv under .bench/), or None and why not."""
    venv = (BENCH_DIR / MLSERVER.replace("==", "-")).resolve()
    python = venv / "bin" / "python"
    if python.exists() and (venv / "bin" / "mlserver").exists():
        return venv, ""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        return None, "uv not found (run it through `make bench`)"
    try:
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), MLSERVER, "onnxruntime", "numpy"],
            check=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        return None, f"could not install {MLSERVER}: {exc}"
    return venv, ""


def _commands(name: str, port: int, model_dir: Path, tmp: Path, mlserver: Path | None) -> Any:
    """The command, environment and working folder of one server."""
    env = {
        **os.environ,
        "MLOPS_TEMPLATE_MODEL_DIR": str(model_dir),
        "MLOPS_TEMPLATE_LOG_LEVEL": "warning",
        "MLOPS_TEMPLATE_MAX_BODY_BYTES": str(64 * 2**20),
    }
    if name == "ours":
        command = [sys.executable, "-m", "mlops_template", "serve", "--port", str(port)]
        return [*_pin(0), *command, "--workers", "1"], env, None
    if name == "bare":
        command = [sys.executable, "-m", "uvicorn", "benchmarks.reference:app", "--port", str(port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
        return [*_pin(0), *command, "--log-level", "warning"], env, None
    assert mlserver is not None
    folder = tmp / "mlserver"
    runtime = Path(__file__).with_name("mlserver_runtime.py")
    model = folder / "model"
    model.mkdir(parents=True)
    shutil.copy(runtime, folder / "mlserver_runtime.py")
    card = load_card(current_version(model_dir) / CARD_FILE)
    (model / "model-settings.json").write_text(
        json.dumps(
            {
                "name": card.name,
                "implementation": "mlserver_runtime.OnnxRuntime",
                "parameters": {"uri": str(current_version(model_dir).resolve())},
            }
        )
    )
    ports = {"MLSERVER_HTTP_PORT": port, "MLSERVER_GRPC_PORT": _free_port()}
    ports["MLSERVER_METRICS_PORT"] = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")},
        **{k: str(v) for k, v in ports.items()},
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_PARALLEL_WORKERS": "0",  # one process: inference in the server's own loop
        "MLSERVER_DEBUG": "false",
        "MLSERVER_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(folder),
    }
    return [*_pin(0), str(mlserver / "bin" / "mlserver"), "start", str(model)], env, folder


@dataclass(frozen=True)
class Target:
    """One ratio of two figures and the bound it must meet."""

    what: str
    ratio: float
    bound: float
    at_least: bool

    def line(self) -> str:
        if self.ratio != self.ratio:  # NaN: a server was not measured
            return f"ratio {self.what:44}   n/a  (target not measured)  <-- MISSED TARGET"
        ok = self.ratio >= self.bound if self.at_least else self.ratio <= self.bound
        sign = ">=" if self.at_least else "<="
        mark = "" if ok else "  <-- MISSED TARGET"
        return f"ratio {self.what:44} {self.ratio:5.2f}x (target {sign} {self.bound}x){mark}"


def bench_serving(
    model_dir: Path, *, duration: float = DURATION, rounds: int = ROUNDS, peer: bool = True
) -> None:
    """Print the serving figures and their ratios to the targets; `rounds` alternating rounds
    of `duration` seconds a run, each figure the median of its rounds; MLServer too if `peer`."""
    card = load_card(current_version(model_dir) / CARD_FILE)
    requests = _requests(card)
    peer = peer and _present("mlserver")
    mlserver, why = _mlserver_env() if peer else (None, "a quick run leaves it out")
    servers = [
        name for name in SERVES if _present(name) and (name != "mlserver" or mlserver is not None)
    ]
    runs: dict[tuple[str, Scenario], list[Result]] = {}
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {1})  # the load generator on core 1, the servers on core 0
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, contextlib.ExitStack() as up:
        ports = {}
        for name in servers:
            ports[name] = _free_port()
            command, env, cwd = _commands(name, ports[name], model_dir, Path(tmp), mlserver)
            up.enter_context(_server(command, ports[name], env, cwd))
        for name in servers:  # warm up each: imports, first calls, caches
            for scenario in SERVES[name]:
                _run_client(ports[name], requests[name, scenario], min(duration, 1.0))
        for _ in range(rounds):
            for name in servers:
                for scenario in SERVES[name]:
                    result = _run_client(ports[name], requests[name, scenario], duration)
                    runs.setdefault((name, scenario), []).append(result)

    def median(name: str, scenario: Scenario) -> Result:
        results = runs.get((name, scenario))
        if not results:
            return Result(float("nan"), float("nan"), float("nan"), 0)
        return Result(
            statistics.median(r.rps for r in results),
            statistics.median(r.p50_ms for r in results),
            statistics.median(r.p99_ms for r in results),
            sum(r.failures for r in results),
        )

    print(
        f"\n## Serving `{card.name}` (one worker on one core, {CONNECTIONS} connections, "
        f"asyncio client on the other core; median of {rounds} rounds of {duration:g} s)"
    )
    if mlserver is None and _present("mlserver"):
        print(f"MLServer not measured: {why}")
    header = ("scenario", "server", "req/s", "rows/s", "p50 ms", "p99 ms", "fail")
    print("{:22} {:9} {:>9} {:>11} {:>8} {:>8} {:>5}".format(*header))
    for name, scenarios in SERVES.items():
        for scenario in scenarios if _present(name) else ():
            r = median(name, scenario)
            figures = (r.rps, r.rps * scenario.rows, r.p50_ms, r.p99_ms, r.failures)
            print(
                f"{scenario.label:22} {name:9} "
                + "{:9,.0f} {:11,.0f} {:8.2f} {:8.2f} {:5d}".format(*figures)
            )

    def ours(scenario: Scenario) -> Result:
        return median("ours", scenario)

    def bare(scenario: Scenario) -> Result:
        return median("bare", scenario)

    def theirs(scenario: Scenario) -> Result:
        return median("mlserver", scenario)

    targets: list[Target] = []
    if _present("bare"):
        targets += [
            Target(
                "/predict b1 req/s, ours / bare",
                ours(PREDICT_1).rps / bare(PREDICT_1).rps,
                0.8,
                True,
            ),
            Target(
                "/predict b1 p50, ours / bare",
                ours(PREDICT_1).p50_ms / bare(PREDICT_1).p50_ms,
                1.5,
                False,
            ),
            Target(
                "/predict b1024 rows/s, ours / bare",
                ours(PREDICT_1024).rps / bare(PREDICT_1024).rps,
                0.8,
                True,
            ),
        ]
    if _present("mlserver"):
        targets += [
            Target("v2 b1 req/s, ours / MLServer", ours(V2_1).rps / theirs(V2_1).rps, 2.0, True),
            Target(
                "v2 b1024 req/s, ours / MLServer",
                ours(V2_1024).rps / theirs(V2_1024).rps,
                2.0,
                True,
            ),
        ]
    failed = sum(r.failures for results in runs.values() for r in results)
    for target in targets:
        print(target.line())
    if failed:
        print(f"{failed} requests failed  <-- MISSED TARGET")
