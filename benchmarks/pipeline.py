"""Inference floor, batch prediction and data preparation, each against its yardstick.

- onnxruntime alone, batch 1 and 1024: the floor that nothing built on it can beat;
- `predict_file` on a synthetic million-row Parquet file of the dataset's schema, as rows/s
  and as a share of the floor's rows/s (target: at least 0.5x);
- `prepare_dataset` on a synthetic ten-million-row CSV, against an equivalent pandas pipeline
  (the same checks, split and Parquet output), time and peak memory, each in a fresh process
  (target: Polars at least 2.5x faster, with lower peak memory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def _best_of(fn: Callable[[], object], repeat: int, number: int) -> float:
    """The best mean seconds per call over `repeat` rounds of `number` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def synthetic_rows(source: Path, rows: int, seed: int = 0) -> pl.DataFrame:
    """`rows` rows drawn from the real data, numbers jittered, its missing values kept."""
    base = pl.read_csv(source, null_values=["NA"], infer_schema_length=None)
    rng = np.random.default_rng(seed)
    sample = base[rng.integers(0, base.height, rows)]
    numeric = [c for c, t in sample.schema.items() if t.is_numeric() and c != "year"]
    jitter = [
        (pl.col(c) * pl.Series(rng.uniform(0.98, 1.02, rows))).round(1).alias(c) for c in numeric
    ]
    return sample.with_columns(jitter)


def train(workdir: Path) -> Path:
    """Prepare the shipped data and train on it in `workdir`; return the model folder."""
    from mlops_template.data import prepare_dataset
    from mlops_template.schema import load_schema
    from mlops_template.train import train_model

    schema = load_schema(ROOT / "dataset.toml")
    prepare_dataset(schema, workdir / "processed")
    train_model(schema, workdir / "processed", workdir / "models")
    return workdir / "models"


def bench_inference(workdir: Path, rows: int) -> None:
    from mlops_template.batch import predict_file
    from mlops_template.inference import OnnxModel

    model = OnnxModel.load(train(workdir))
    frame = synthetic_rows(ROOT / "data/raw/penguins.csv", rows)
    from mlops_template.data import to_model_inputs

    one = to_model_inputs(frame.head(1), model.card.features, model.card.inputs)
    many = to_model_inputs(frame.head(1024), model.card.features, model.card.inputs)
    per_call_1 = _best_of(lambda: model.run(one), repeat=5, number=2000)
    per_call_1024 = _best_of(lambda: model.run(many), repeat=5, number=50)
    floor_rows = 1024 / per_call_1024
    print("\n## Inference floor (onnxruntime alone, one thread)")
    print(f"batch 1     {per_call_1 * 1e6:10.1f} µs/call")
    print(f"batch 1024  {per_call_1024 * 1e6:10.1f} µs/call  ({floor_rows:,.0f} rows/s)")

    source = workdir / "batch.parquet"
    frame.write_parquet(source)
    start = time.perf_counter()
    predict_file(model, source, workdir / "scored.parquet")
    elapsed = time.perf_counter() - start
    rate = rows / elapsed
    print(f"\n## Batch predict ({rows:,} rows, Parquet in and out)")
    print(f"predict_file {rate:12,.0f} rows/s  ({elapsed:.2f} s)")
    print(f"ratio to floor {rate / floor_rows:10.2f}x  (target >= 0.5x)")


PANDAS_PIPELINE = """
import json, sys, numpy as np, pandas as pd
from pathlib import Path
from mlops_template.schema import load_schema
schema = load_schema(Path(sys.argv[1]))
source, out = sys.argv[2], Path(sys.argv[3])
frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=list(schema.null_values))
problems = 0
typed = {}
for spec in (schema.target, *schema.features):
    raw = frame[spec.name]
    if spec.type == "category":
        bad = raw.notna() & ~raw.isin(list(spec.categories))
        typed[spec.name] = raw
    else:
        number = pd.to_numeric(raw, errors="coerce")
        bad = (raw.notna() & number.isna()) | np.isinf(number)
        if spec.min is not None:
            bad |= number < spec.min
        if spec.max is not None:
            bad |= number > spec.max
        typed[spec.name] = number
    if not spec.nullable and spec.name != schema.target.name:
        bad |= raw.isna()
    problems += int(bad.sum())
assert problems == 0, problems
data = pd.DataFrame(typed)
data = data[data[schema.target.name].notna()]
rng = np.random.default_rng(schema.split.seed)
data["_r"] = rng.random(len(data))
data["_rank"] = data.groupby(schema.target.name)["_r"].rank(method="first")
data["_n"] = data.groupby(schema.target.name)["_r"].transform("size")
is_test = data["_rank"] <= (data["_n"] * schema.split.test_fraction).round()
data[~is_test].drop(columns=["_r", "_rank", "_n"]).to_parquet(out / "train.parquet")
data[is_test].drop(columns=["_r", "_rank", "_n"]).to_parquet(out / "test.parquet")
"""

POLARS_PIPELINE = """
import sys
from pathlib import Path
from mlops_template.data import prepare_dataset
from mlops_template.schema import load_schema
schema = load_schema(Path(sys.argv[1]))
prepare_dataset(schema.model_copy(update={"source": Path(sys.argv[2])}), Path(sys.argv[3]))
"""


def _measure(code: str, *args: str) -> tuple[float, float]:
    """Seconds and peak resident memory (MiB) of `code` run in a fresh interpreter."""
    script = (
        "import resource, sys, time\nstart = time.perf_counter()\n"
        + code
        + "\nprint(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    seconds, peak_kib = out.stdout.split()[-2:]
    return float(seconds), float(peak_kib) / 1024


def bench_prepare(workdir: Path, rows: int) -> None:
    source = workdir / "big.csv"
    synthetic_rows(ROOT / "data/raw/penguins.csv", rows).write_csv(source, null_value="NA")
    size = source.stat().st_size / 2**20
    schema_path = str(ROOT / "dataset.toml")
    figures = {}
    for name, code in (("polars", POLARS_PIPELINE), ("pandas", PANDAS_PIPELINE)):
        out = workdir / f"out-{name}"
        out.mkdir()
        figures[name] = _measure(code, schema_path, str(source), str(out))
    (p_time, p_mem), (q_time, q_mem) = figures["polars"], figures["pandas"]
    print(f"\n## Prepare ({rows:,}-row CSV, {size:,.0f} MiB: check, split, write Parquet)")
    print(f"polars  {p_time:8.2f} s  peak {p_mem:8,.0f} MiB")
    print(f"pandas  {q_time:8.2f} s  peak {q_mem:8,.0f} MiB")
    print(f"polars is {q_time / p_time:.1f}x faster (target >= 2.5x)")
    print(f"polars peak memory is {p_mem / q_mem:.2f}x pandas' (target < 1x)")


def run(*, quick: bool = False) -> None:
    """Print every figure; `quick` uses small sizes to check that the benchmark runs."""
    print(json.dumps({"python": sys.version.split()[0], "cores": len(os.sched_getaffinity(0))}))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench_inference(Path(tmp), rows=20_000 if quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench_prepare(Path(tmp), rows=50_000 if quick else 10_000_000)
