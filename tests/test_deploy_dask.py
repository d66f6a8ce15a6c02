"""The DaskJob in deploy/dask/: its pods run hardened on one shared volume, and its command,
run here as the Dask operator would start it, scores the volume's input."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlops_template.settings import ENV_PREFIX

from .conftest import PENGUINS
from .test_deploy import one, rendered


def daskjob() -> dict[str, Any]:
    return one(rendered("dask"), "DaskJob")


def test_every_batch_pod_runs_hardened_on_the_shared_volume() -> None:
    spec = daskjob()["spec"]
    pods = {
        "job": spec["job"]["spec"],
        "scheduler": spec["cluster"]["spec"]["scheduler"]["spec"],
        "worker": spec["cluster"]["spec"]["worker"]["spec"],
    }
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        assert {"requests", "limits"} <= set(container["resources"]), name
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert ("/data" in mounts) == (name != "scheduler"), name
    # The worker's own limit leaves room for its nanny in the same container: Dask spills and
    # restarts the worker before the kernel's OOM killer ends the pod.
    (worker,) = pods["worker"]["containers"]
    args = worker["args"]
    budget = parse_size(args[args.index("--memory-limit") + 1])
    assert budget <= 0.8 * parse_size(worker["resources"]["limits"]["memory"])
    claims = {
        volume["persistentVolumeClaim"]["claimName"]
        for pod in pods.values()
        for volume in pod["volumes"]
        if "persistentVolumeClaim" in volume
    }
    (pvc,) = (r for r in rendered("dask") if r["kind"] == "PersistentVolumeClaim")
    assert claims == {pvc["metadata"]["name"]}
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # every worker writes partitions


def parse_size(text: str) -> float:
    """`2GiB` or `2Gi` or `1536MiB`, in bytes."""
    number, unit = re.fullmatch(r"(\d+)\s*([KMG]i)B?", text).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** ("KMG".index(unit[0]) + 1)


def job_command(data: Path, scheduler: str) -> list[str]:
    """The DaskJob's command, with its volume at `data` and the scheduler the operator gives."""
    (container,) = daskjob()["spec"]["job"]["spec"]["containers"]
    return [
        arg.replace("/data", str(data)).replace("$(DASK_SCHEDULER_ADDRESS)", scheduler)
        for arg in container["args"]
    ]


def test_the_daskjob_command_scores_the_volumes_input(
    trained_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from mlops_template.cli import app

    pl = pytest.importorskip("polars")
    pl.read_csv(PENGUINS, null_values=["NA"]).write_parquet(tmp_path / "input.parquet")
    monkeypatch.setenv(f"{ENV_PREFIX}MODEL_DIR", str(trained_dir))  # the image's ENV
    command = job_command(tmp_path, "synchronous")
    assert (Path(sys.executable).parent / command[0]).is_file()  # the package's own command
    result = CliRunner().invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "predictions.parquet").height == 344


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_daskjob_runs_here_as_the_operator_would_start_it(
    trained_dir: Path, tmp_path: Path
) -> None:
    """The scheduler, a worker and the job, each started with its manifest's own command (on
    127.0.0.1, with the variables the operator sets), score the volume's input."""
    import polars as pl

    from .test_serving_live import free_port, get

    cluster = daskjob()["spec"]["cluster"]["spec"]
    (scheduler,) = cluster["scheduler"]["spec"]["containers"]
    (worker,) = cluster["worker"]["spec"]["containers"]
    bin_dir = Path(sys.executable).parent
    port, dashboard = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DASK_SCHEDULER_ADDRESS": address,
        "DASK_WORKER_NAME": "worker-0",
        f"{ENV_PREFIX}MODEL_DIR": str(trained_dir),  # the image's ENV
        **{item["name"]: item["value"] for item in worker.get("env", [])},
    }
    local = ["--host", "127.0.0.1"]
    started: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], *extra: str) -> None:
        command = [str(bin_dir / args[0]), *args[1:], *extra]
        started.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    try:
        start(
            scheduler["args"],
            *local,
            "--port",
            str(port),
            "--dashboard-address",
            f"127.0.0.1:{dashboard}",
        )
        probe = scheduler["readinessProbe"]["httpGet"]["path"]
        for _ in range(600):  # the readiness probe, as the kubelet sends it: up to 60 s
            with contextlib.suppress(OSError):
                if get(f"http://127.0.0.1:{dashboard}{probe}")[0] == 200:
                    break
            assert started[0].poll() is None, "the scheduler exited"
            time.sleep(0.1)
        else:
            pytest.fail(f"the scheduler's {probe} never answered 200")
        args = [a.replace("$(DASK_WORKER_NAME)", env["DASK_WORKER_NAME"]) for a in worker["args"]]
        args = [str(tmp_path) if a == "/tmp" else a for a in args]
        start(args, *local)
        pl.read_csv(PENGUINS, null_values=["NA"]).write_parquet(tmp_path / "input.parquet")
        command = job_command(tmp_path, address)
        job = subprocess.run(
            [str(bin_dir / command[0]), *command[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert job.returncode == 0, job.stdout + job.stderr
        assert "scored 344 rows" in job.stdout
        assert pl.read_parquet(tmp_path / "predictions.parquet").height == 344
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=30)
