"""A real uvicorn process on 127.0.0.1: answers, concurrency, shutdown, bad models, logs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mlops_template._fs import current_version
from mlops_template.card import MODEL_FILE, ModelCard
from mlops_template.data import TEST_FILE
from mlops_template.inference import OnnxModel
from mlops_template.schema import DatasetSchema, LinearModel

pytestmark = pytest.mark.e2e
STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, payload: Any, timeout: float = 30) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> list[str]:
        return self.log.read_text().splitlines()


def start(model_dir: Path, tmp_path: Path, **env: str) -> subprocess.Popen[bytes]:
    port = env.pop("PORT", str(free_port()))
    environment = {**os.environ, "MLOPS_TEMPLATE_MODEL_DIR": str(model_dir), **env}
    command = [
        sys.executable,
        "-m",
        "mlops_template",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        port,
    ]
    with (tmp_path / "server.log").open("wb") as log:  # the child keeps its own copy
        return subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def serving(model_dir: Path, tmp_path: Path, **env: str) -> Iterator[Server]:
    port = str(free_port())
    process = start(model_dir, tmp_path, PORT=port, **env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(OSError):
                if get(f"{url}/health/ready", timeout=1)[0] == 200:
                    break
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        yield Server(url, process, tmp_path / "server.log")
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture(scope="module")
def test_rows(prepared_dir: Path, card: ModelCard) -> list[dict[str, Any]]:
    return (
        pl.read_parquet(current_version(prepared_dir) / TEST_FILE)
        .select(card.feature_names)
        .to_dicts()
    )


@pytest.fixture(scope="module")
def expected_labels(
    trained_dir: Path, test_rows: list[dict[str, Any]], card: ModelCard
) -> list[str]:
    """The in-process model's labels for the test rows: what the server must answer."""
    expected = OnnxModel.load(trained_dir).predict(
        {n: [r[n] for r in test_rows] for n in card.feature_names}
    )
    assert expected.labels is not None
    return list(expected.labels.tolist())


def test_served_predictions_equal_the_in_process_ones(
    trained_dir: Path, tmp_path: Path, test_rows: list[dict[str, Any]], expected_labels: list[str]
) -> None:
    with serving(trained_dir, tmp_path) as server:
        status, body = post(f"{server.url}/predict", {"records": test_rows})
        assert get(f"{server.url}/docs")[0] == 200
    assert status == 200
    assert [p["label"] for p in body["predictions"]] == expected_labels


def test_many_threads_many_requests_no_wrong_answer(
    trained_dir: Path, tmp_path: Path, test_rows: list[dict[str, Any]], expected_labels: list[str]
) -> None:
    labels = expected_labels

    def client(worker: int) -> int:
        wrong = 0
        for i in range(60):  # bounded: 16 workers x 60 requests
            start = (worker * 7 + i * 3) % len(test_rows)
            size = 1 + (i % 5)
            rows = [test_rows[(start + k) % len(test_rows)] for k in range(size)]
            status, body = post(url, {"records": rows}, timeout=30)
            want = [labels[(start + k) % len(test_rows)] for k in range(size)]
            wrong += status != 200 or [p["label"] for p in body["predictions"]] != want
        return wrong

    with serving(trained_dir, tmp_path) as server:
        url = f"{server.url}/predict"
        with ThreadPoolExecutor(max_workers=16) as pool:
            wrong = sum(pool.map(client, range(16)))
        metrics = get(f"{server.url}/metrics")[1]
    assert wrong == 0
    calls = float(
        next(
            line.split()[-1]
            for line in metrics.splitlines()
            if line.startswith("model_calls_total")
        )
    )
    rows = float(
        next(
            line.split()[-1]
            for line in metrics.splitlines()
            if line.startswith("model_rows_predicted_total")
        )
    )
    assert rows == sum(1 + (i % 5) for i in range(60)) * 16
    assert calls <= 960  # never more calls than requests; fewer when batched


def _gauge(url: str, name: str) -> float:
    metrics = get(f"{url}/metrics")[1]
    line = next(x for x in metrics.splitlines() if x.startswith(f"{name} "))
    return float(line.split()[-1])


def _half_sent(url: str, body: bytes, count: int) -> list[socket.socket]:
    """`count` POST /predict requests that send half their body and wait, once the server
    holds them all (its http_requests_receiving gauge says so)."""
    port = int(url.rsplit(":", 1)[1])
    clients = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        clients.append(sock)
    deadline = time.monotonic() + 20
    while _gauge(url, "http_requests_receiving") < count:
        assert time.monotonic() < deadline, f"the server never held all {count} requests"
        time.sleep(0.01)
    return clients


def _status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a status line")
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_sigterm_lets_every_accepted_request_finish_and_exits_0(
    trained_dir: Path, tmp_path: Path, card: ModelCard
) -> None:
    """The guarantee, exactly: a request the server has accepted (its headers read) before
    SIGTERM is answered, even one whose body is still arriving; a connection made after it is
    refused, which a client can retry elsewhere; the process then exits 0.

    Deterministic: each client sends half its body and waits until the server holds all twelve,
    so none can finish early or arrive late.
    """
    body = json.dumps({"records": [card.example] * 64}).encode()
    with serving(trained_dir, tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        clients = _half_sent(server.url, body, 12)
        server.process.send_signal(signal.SIGTERM)
        refused = False
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.01)
            except ConnectionRefusedError:
                refused = True
        statuses = []
        for sock in clients:
            sock.sendall(body[len(body) // 2 :])
            statuses.append(_status(sock))
            sock.close()
        code = server.process.wait(timeout=30)
    assert refused, "new connections were still accepted after SIGTERM"
    assert statuses == [200] * 12
    assert code == 0
    assert any("Finished server process" in line for line in server.logs())


def test_sigterm_with_200_requests_in_flight_answers_every_one(
    trained_dir: Path, tmp_path: Path, card: ModelCard
) -> None:
    """200 connections each send a whole request, and SIGTERM follows at once: some are still
    in the kernel's accept queue, others accepted but not yet read. Each gets its answer
    (uvicorn alone reset them: its shutdown closes a connection with no request under way)."""
    body = json.dumps({"records": [card.example] * 64}).encode()
    request = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with serving(trained_dir, tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        clients = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(request)
            clients.append(sock)
        server.process.send_signal(signal.SIGTERM)
        statuses = []
        for sock in clients:
            try:
                statuses.append(_status(sock))
            except OSError as error:  # a reset: the answer lost
                statuses.append(type(error).__name__)
            sock.close()
        code = server.process.wait(timeout=60)
    assert statuses == [200] * 200
    assert code == 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "does not match the model card's"),
        ("delete", "model.onnx: model not found"),
    ],
)
def test_a_bad_model_stops_start_up_with_one_line(
    model_dir: Path, tmp_path: Path, damage: str, message: str
) -> None:
    path = current_version(model_dir) / MODEL_FILE
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.unlink()
    port = free_port()
    process = start(model_dir, tmp_path, PORT=str(port))
    code = process.wait(timeout=STARTUP_SECONDS)
    output = (tmp_path / "server.log").read_text().strip().splitlines()
    assert code == 1
    assert output[0].startswith("error: ")
    assert message in output[0]
    assert (
        output[1]
        == "hint: retrain with `make train` so the model and its card are written together"
        or "make train" in output[1]
    )
    assert "Traceback" not in "\n".join(output)
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass


def test_logs_are_json_with_request_ids_and_no_values(
    trained_dir: Path, tmp_path: Path, card: ModelCard
) -> None:
    secret = {**card.example, "bill_length_mm": 47.123456}
    with serving(trained_dir, tmp_path, MLOPS_TEMPLATE_LOG_REQUESTS="true") as server:
        assert post(f"{server.url}/predict", {"records": [secret]})[0] == 200
        assert (
            post(f"{server.url}/predict", {"records": [{**secret, "island": "Atlantis"}]})[0] == 422
        )
    lines = [json.loads(line) for line in server.logs() if line.startswith("{")]
    requests = [
        line for line in lines if line["message"] == "request" and line["route"] == "/predict"
    ]
    assert [r["status"] for r in requests] == [200, 422]
    assert all(len(r["request_id"]) >= 16 for r in requests)
    text = server.log.read_text()
    assert "47.123456" not in text
    assert "Atlantis" not in text


def test_slow_uploads_hold_connections_not_the_server(
    trained_dir: Path, tmp_path: Path, card: ModelCard
) -> None:
    """64 clients that send half a body and wait: other clients still predict, readiness still
    answers, and each slow client gets 408 once its body deadline passes."""
    body = json.dumps({"records": [card.example]}).encode()
    settings = {
        "MLOPS_TEMPLATE_BODY_TIMEOUT": "3",
        "MLOPS_TEMPLATE_MAX_CONCURRENCY": "64",
    }
    with serving(trained_dir, tmp_path, **settings) as server:
        slow = _half_sent(server.url, body, 64)
        assert get(f"{server.url}/health/ready")[0] == 200
        assert post(f"{server.url}/predict", {"records": [card.example]})[0] == 200
        statuses = [_status(sock) for sock in slow]  # each waits out its own deadline
        for sock in slow:
            sock.close()
        assert _gauge(server.url, "http_requests_receiving") == 0
    assert statuses == [408] * 64


def test_bodies_are_read_within_their_deadline_and_their_cap_whatever_the_method(
    trained_dir: Path, tmp_path: Path, card: ModelCard
) -> None:
    """A GET that declares a body and trickles it gets 408 at its deadline (it was held open
    for as long as it trickled); bodies past the cap on bytes held at once get 503 at once,
    while files and health are served whatever the load."""
    body = json.dumps({"records": [card.example] * 1500}).encode()  # about 200 KB
    settings = {  # room for one half-sent body, not two
        "MLOPS_TEMPLATE_BODY_TIMEOUT": "2",
        "MLOPS_TEMPLATE_MAX_BUFFERED_BYTES": str(len(body)),
    }
    with serving(trained_dir, tmp_path, **settings) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            started = time.monotonic()
            with contextlib.suppress(OSError):  # the server closes once it has answered
                for _ in range(8):
                    sock.sendall(b"x")
                    time.sleep(0.5)
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert time.monotonic() - started < 6
        first = _half_sent(server.url, body, 1)
        second = _half_sent_now(server.url, body)
        assert _status(second) == 503  # at once, not at the deadline
        assert get(f"{server.url}/health/ready")[0] == 200
        assert get(f"{server.url}/static/swagger-ui/swagger-ui.css")[0] == 200
        assert _status(first[0]) == 408
        for sock in [*first, second]:
            sock.close()


def _half_sent_now(url: str, body: bytes) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[: len(body) // 2 + 1024])
    return sock


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) / 1024


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_heads_too_large_too_many_or_too_slow_are_refused(
    trained_dir: Path, tmp_path: Path, card: ModelCard
) -> None:
    """Four 32 MiB headers get 431 while the server's memory stays put (httptools would hold
    each whole); 101 headers get 431; a head that trickles gets 408, on a new connection or a
    kept-alive one; others are served."""
    limits = {"MLOPS_TEMPLATE_HEAD_TIMEOUT": "1"}
    with serving(trained_dir, tmp_path, **limits) as server:
        port = int(server.url.rsplit(":", 1)[1])
        before = _rss_mib(server.process.pid)
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nX-Big: ")
                with contextlib.suppress(OSError):  # the server may close while we send
                    for _ in range(32):
                        sock.sendall(b"a" * 2**20)
                answer = _answer(sock)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert _rss_mib(server.process.pid) - before < 32
        many = "".join(f"X-H{i}: {i}\r\n" for i in range(101))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"GET /health/ready HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
            answer = _answer(sock)
            assert answer.startswith(b"HTTP/1.1 431 ")
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:  # v2's own body
            sock.sendall(f"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
            answer = _answer(sock)
            assert answer.startswith(b"HTTP/1.1 431 ")
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
                "error": "more than 100 request headers"
            }
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and then nothing
            answer = _answer(sock)  # within the one-second deadline, not the socket's 30
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        # The second request of a keep-alive connection is held to the same deadline.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b'"live"}'):
                first += sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"GET /health/live HTTP/1.1\r\n")
            for _ in range(3):  # a byte at a time, each well within the deadline
                time.sleep(0.5)
                sock.sendall(b"X")
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert post(f"{server.url}/predict", {"records": [card.example]})[0] == 200
        assert get(f"{server.url}/health/ready")[0] == 200
        # A large body in the same write as its head is a body, not a head: served.
        big = json.dumps({"records": [card.example] * 1024}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = (
                "POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(big)}\r\n\r\n"
            )
            sock.sendall(head.encode() + big)
            assert _answer(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.e2e
def test_every_worker_serves_the_version_the_server_started_with(
    schema: DatasetSchema, prepared_dir: Path, trained_dir: Path, tmp_path: Path
) -> None:
    """With two workers, a model trained while serving and a worker killed: the worker that
    replaces it loads the version the server resolved at start, as the other one serves."""
    from mlops_template.train import train_model

    models = tmp_path / "models"
    shutil.copytree(trained_dir, models, symlinks=True)
    with serving(models, tmp_path, MLOPS_TEMPLATE_WORKERS="2") as server:
        started = json.loads(get(f"{server.url}/model")[1])["version"]
        newer = schema.model_copy(update={"model": LinearModel(C=0.1)})
        assert train_model(newer, prepared_dir, models).version != started
        _wait_for_ready_lines(server, 2)  # both workers up (one answering is not both)
        workers = _children(server.process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        _wait_for_ready_lines(server, 3)  # and its replacement
        deadline = time.monotonic() + STARTUP_SECONDS
        answers = []
        while len(answers) < 60 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, body = get(f"{server.url}/model", timeout=2)
                if status == 200:
                    answers.append(json.loads(body)["version"])
        assert answers, "no answer after the restart"
    assert set(answers) == {started}


@pytest.mark.e2e
def test_sighup_takes_a_newly_trained_model_on_every_worker_without_losing_a_request(
    schema: DatasetSchema, prepared_dir: Path, trained_dir: Path, tmp_path: Path
) -> None:
    """SIGHUP to a two-worker server: each worker is replaced by one serving the version
    `train` published meanwhile, and a client asking all the while gets every answer. A
    reload to a folder with no model is refused, and the server keeps what it serves."""
    from mlops_template.train import train_model

    models = tmp_path / "models"
    shutil.copytree(trained_dir, models, symlinks=True)
    with serving(models, tmp_path, MLOPS_TEMPLATE_WORKERS="2") as server:
        _wait_for_ready_lines(server, 2)
        newer = schema.model_copy(update={"model": LinearModel(C=0.1)})
        trained = train_model(newer, prepared_dir, models).version
        with ThreadPoolExecutor(max_workers=1) as pool:
            asking = pool.submit(
                _ask_until,
                f"{server.url}/model",
                lambda: len(_children(server.process.pid)) == 2 and _ready_lines(server) >= 4,
            )
            os.kill(server.process.pid, signal.SIGHUP)
            statuses = asking.result(timeout=2 * STARTUP_SECONDS)
        assert len(statuses) > 20
        assert set(statuses) == {200}, statuses
        answers = [json.loads(get(f"{server.url}/model")[1])["version"] for _ in range(40)]
        assert set(answers) == {trained}

        (models / "current").unlink()
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not any("reload refused" in line for line in server.logs()):
            assert time.monotonic() < deadline, "\n".join(server.logs()[-20:])
            time.sleep(0.1)
        answers = [json.loads(get(f"{server.url}/model")[1])["version"] for _ in range(20)]
        assert set(answers) == {trained}
        assert _ready_lines(server) == 4  # no worker was replaced


def test_sighup_to_one_worker_is_refused_with_a_log_line_and_the_server_goes_on(
    trained_dir: Path, tmp_path: Path
) -> None:
    with serving(trained_dir, tmp_path) as server:
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not any("SIGHUP ignored" in line for line in server.logs()):
            assert time.monotonic() < deadline, "\n".join(server.logs()[-20:])
            time.sleep(0.1)
        assert get(f"{server.url}/health/ready")[0] == 200
        assert server.process.poll() is None


def _ask_until(url: str, done: Any) -> list[int | str]:
    """GET `url` on a new connection each time until `done()` (bounded): statuses, or errors."""
    statuses: list[int | str] = []
    deadline = time.monotonic() + 2 * STARTUP_SECONDS
    while time.monotonic() < deadline and len(statuses) < 20_000:
        try:
            statuses.append(get(url, timeout=10)[0])
        except OSError as exc:
            statuses.append(repr(exc))
        if len(statuses) > 20 and done():
            break
    return statuses


def _ready_lines(server: Server) -> int:
    return sum("model ready" in line for line in server.logs())


def _wait_for_ready_lines(server: Server, count: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while sum("model ready" in line for line in server.logs()) < count:
        assert time.monotonic() < deadline, "\n".join(server.logs()[-20:])
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    """uvicorn's workers under `pid` (spawned; not multiprocessing's tracker), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    return sorted(found)
