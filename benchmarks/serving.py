"""`/predict` under a bounded local load, against a bare ASGI reference on the same model.

Each server runs alone, with one worker pinned to core 0; the load generator (wrk, or a small
asyncio client when wrk is not installed) is pinned to core 1 and talks to 127.0.0.1 only. Every
run is bounded in time. Targets: requests/s at batch 1 (16 connections) at least 0.8x the
reference, p50 at one connection at most 1.5x the reference's, rows/s at batch 1024 at least
0.8x the reference's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from mlops_template._fs import current_version
from mlops_template.card import CARD_FILE, load_card

DURATION = 8  # seconds per load run
SCENARIOS = (
    ("batch 1, 16 connections", 1, 16),
    ("batch 1, 1 connection", 1, 1),
    ("batch 1024, 4 connections", 1024, 4),
)


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
def _server(command: list[str], port: int, env: dict[str, str]) -> Iterator[None]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                stderr = process.stderr.read().decode()[-2000:] if process.stderr else ""
                raise RuntimeError(f"server exited: {stderr}")
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


def _wrk(url: str, body: Path, connections: int, duration: int) -> Result:
    script = body.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
    )
    command = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    command += ["--timeout", "5s", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 30)
    out = out.stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failures = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = int(failures.group(1)) if failures else 0
    failed += sum(int(g) for g in errors.groups()) if errors else 0
    return Result(rps, latency("50"), latency("99"), failed)


async def _client(port: int, payload: bytes, connections: int, duration: int) -> Result:
    """A bounded keep-alive HTTP/1.1 client, for machines without wrk."""
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
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
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            failures += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.monotonic() - began
    latencies.sort()
    return Result(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1e3,
        latencies[int(len(latencies) * 0.99)] * 1e3,
        failures,
    )


def _load(port: int, body: Path, connections: int, duration: int) -> Result:
    if shutil.which("wrk"):
        return _wrk(f"http://127.0.0.1:{port}/predict", body, connections, duration)
    return asyncio.run(_client(port, body.read_bytes(), connections, duration))


def bench_serving(model_dir: Path, *, duration: int = DURATION) -> None:
    """Print `/predict` figures against the bare reference; `duration` seconds a run."""
    card = load_card(current_version(model_dir) / CARD_FILE)
    env = {
        **os.environ,
        "MLOPS_TEMPLATE_MODEL_DIR": str(model_dir),
        "MLOPS_TEMPLATE_LOG_LEVEL": "warning",
    }
    results: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        bodies = {}
        for rows in {r for _, r, _ in SCENARIOS}:
            bodies[rows] = Path(tmp) / f"body-{rows}.json"
            bodies[rows].write_bytes(orjson.dumps({"records": [card.example] * rows}))
        for name in ("ours", "reference"):
            port = _free_port()
            if name == "ours":
                command = [
                    *_pin(0),
                    sys.executable,
                    "-m",
                    "mlops_template",
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ]
            else:
                command = [
                    *_pin(0),
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "benchmarks.reference:app",
                    "--port",
                    str(port),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ]
            limits = {"MLOPS_TEMPLATE_MAX_BODY_BYTES": str(64 * 2**20)}
            with _server(command, port, {**env, **limits}):
                _load(port, bodies[SCENARIOS[0][1]], 16, duration)  # warm up
                results[name] = {
                    label: _load(port, bodies[rows], conns, duration)
                    for label, rows, conns in SCENARIOS
                }
    client = "wrk" if shutil.which("wrk") else "asyncio client (install wrk for better figures)"
    print(f"\n## Serving /predict (one worker on one core; load: {client}, {duration} s a run)")
    header = ("scenario", "", "req/s", "rows/s", "p50 ms", "p99 ms", "fail")
    print("{:28} {:10} {:>10} {:>12} {:>8} {:>8} {:>5}".format(*header))
    for label, rows, _ in SCENARIOS:
        for name in ("ours", "reference"):
            r = results[name][label]
            figures = (r.rps, r.rps * rows, r.p50_ms, r.p99_ms, r.failures)
            print(
                f"{label:28} {name:10} "
                + "{:10,.0f} {:12,.0f} {:8.2f} {:8.2f} {:5d}".format(*figures)
            )
    ours, ref = results["ours"], results["reference"]
    one16, one1, big = (label for label, _, _ in SCENARIOS)
    ratios = (
        ("req/s at batch 1 (16 conns)", ours[one16].rps / ref[one16].rps, 0.8, True),
        ("p50 at 1 connection", ours[one1].p50_ms / ref[one1].p50_ms, 1.5, False),
        ("rows/s at batch 1024", ours[big].rps / ref[big].rps, 0.8, True),
    )
    for what, ratio, target, at_least in ratios:
        ok = ratio >= target if at_least else ratio <= target
        bound = ">=" if at_least else "<="
        mark = "" if ok else "  <-- MISSED TARGET"
        print(f"ratio {what:28} {ratio:5.2f}x (target {bound} {target}x){mark}")
