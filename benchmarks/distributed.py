"""Batch prediction on a Dask `LocalCluster` (two worker processes) against the single-process
path, on the same synthetic rows of the project's own data, in one run.

Each path runs in a fresh driver process; rows/s is the time of the `predict` call alone (not
the interpreter's start-up and imports; connecting to the cluster is counted), the median of
alternating rounds. Peak memory is the highest sum of
the resident memory of every process doing the work, sampled every 20 ms: the driver, and for
Dask its workers and their nannies (the scheduler runs in this benchmark's own process and is
not counted). Target: Dask at least 0.8x the single-process rows/s on two cores, where the
overhead is all there is to see; more cores and machines are where it pays.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from .pipeline import MISSED, synthetic_rows

RUN = """
import sys, time
from pathlib import Path
from mlops_template.batch import predict_file
from mlops_template.distributed import predict_distributed
from mlops_template.inference import OnnxModel
models, source, output = (Path(arg) for arg in sys.argv[1:4])
scheduler = sys.argv[4]
if scheduler != "none":
    import distributed  # imported before the clock starts, as in any long-lived driver
start = time.perf_counter()
if scheduler == "none":
    predict_file(OnnxModel.load(models), source, output)
else:
    predict_distributed(models, source, output, scheduler=scheduler)
print(time.perf_counter() - start)
"""


def _tree_rss(pids: list[int]) -> int:
    import psutil

    total = 0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            total += process.memory_info().rss
            total += sum(child.memory_info().rss for child in process.children(recursive=True))
        except psutil.Error:
            continue
    return total


def _run(command: list[str], watch: list[int]) -> tuple[float, float]:
    """Seconds of the predict call and the peak summed RSS (MiB) of the driver and `watch`."""
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss([driver.pid, *watch]))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = driver.communicate(timeout=900)
    done.set()
    sampler.join()
    if driver.returncode != 0:
        raise RuntimeError(f"{command[3:]} failed")
    return float(out.split()[-1]), peak / 2**20


def bench_distributed(models: Path, workdir: Path, rows: int, rounds: int) -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("\n## Batch predict on Dask: skipped (the `dask` extra is not installed)")
        return
    from mlops_template.distributed import local_cluster

    source = workdir / "dask.parquet"
    synthetic_rows(rows).write_parquet(source)
    started = time.perf_counter()
    with local_cluster(workers=2) as cluster:
        start_up = time.perf_counter() - started
        workers = [
            nanny.process.pid
            for nanny in cluster.workers.values()
            if getattr(nanny, "process", None) is not None and nanny.process.pid is not None
        ]
        address = cluster.scheduler_address
        figures: dict[str, list[tuple[float, float]]] = {"single": [], "dask": []}
        for index in range(rounds + 1):  # the first round warms the workers up, and is dropped
            for name, scheduler, watch in (("single", "none", []), ("dask", address, workers)):
                output = workdir / f"{name}-{index}.parquet"
                command = [sys.executable, "-c", RUN, str(models), str(source), str(output)]
                seconds, peak = _run([*command, scheduler], watch)
                if index:
                    figures[name].append((rows / seconds, peak))
    print(
        f"\n## Batch predict on Dask ({rows:,} rows, Parquet in and out; LocalCluster of 2 "
        f"workers x 1 thread; median of {rounds})"
    )
    rates = {}
    for name, measured in figures.items():
        rates[name] = statistics.median(rate for rate, _ in measured)
        peak = max(peak for _, peak in measured)
        print(f"{name:7} {rates[name]:12,.0f} rows/s   peak {peak:8,.0f} MiB (all its processes)")
    print(f"cluster start-up {start_up:.1f} s (once per cluster, not in the figures above)")
    ratio = rates["dask"] / rates["single"]
    mark = "" if ratio >= 0.8 else MISSED
    print(f"dask / single {ratio:10.2f}x  (target >= 0.8x on this machine){mark}")
