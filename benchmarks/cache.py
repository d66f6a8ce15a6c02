"""Would a prediction cache pay? A cache keyed by the checked row, against the model call.

The serving design this project grew from cached predictions with a TTL. Here the cache is the
cheapest honest one: the encoded row as a tuple key in a dict, expiry checked on read, results
gathered back into one prediction, misses scored in one model call and stored. Measured per
call, best of 5 rounds, for each model type on the project's own rows, at batch 1 and 64:

- the model call alone (what a hit would save);
- every row a hit (the cache's own cost);
- every row a miss (the model call plus the cache's bookkeeping: what a miss costs).

The cache wins only where hits save more than misses add, at the hit rate traffic really has:
`break-even` is the share of rows that must repeat exactly (to the last bit of every feature)
for it to pay at all. A server request at batch 1 costs far more than the model call; see the
serving figures.
"""

from __future__ import annotations

import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .pipeline import ROOT, SCHEMA, _best_of, synthetic_rows

# The test suite's text example: measured too, where the project's own data has no text.
TEXT_EXAMPLE = ROOT / "tests" / "data" / "questions.toml"


def _best_us(fn: Callable[[], object], number: int) -> float:
    return _best_of(fn, repeat=5, number=number) * 1e6


class RowCache:
    """Predictions by encoded row, at most `size` of them, each for `ttl` seconds."""

    def __init__(self, size: int = 10_000, ttl: float = 60.0) -> None:
        self.rows: OrderedDict[tuple[Any, ...], tuple[float, Any, Any]] = OrderedDict()
        self.size, self.ttl = size, ttl

    def run(self, model: Any, feed: dict[str, np.ndarray]) -> Any:
        from mlops_template.inference import Prediction

        names = list(feed)
        keys = list(zip(*(feed[name].reshape(-1).tolist() for name in names), strict=True))
        now = time.monotonic()
        found: list[tuple[float, Any, Any] | None] = [None] * len(keys)
        missed = []
        for index, key in enumerate(keys):
            entry = self.rows.get(key)
            if entry is None or entry[0] < now:
                missed.append(index)
            else:
                found[index] = entry
        if missed:
            scored = model.run({name: feed[name][missed] for name in names})
            regression = scored.values is not None
            for position, index in enumerate(missed):
                entry = (
                    now + self.ttl,
                    scored.values[position] if regression else scored.labels[position],
                    None if regression else scored.probabilities[position],
                )
                self.rows[keys[index]] = found[index] = entry
            while len(self.rows) > self.size:
                self.rows.popitem(last=False)
        entries = [entry for entry in found if entry is not None]
        if entries[0][2] is None:
            return Prediction(values=np.array([entry[1] for entry in entries], np.float32))
        return Prediction(
            labels=np.array([entry[1] for entry in entries], dtype=object),
            probabilities=np.stack([entry[2] for entry in entries]),
        )


def bench_cache(*, quick: bool = False) -> None:
    from mlops_template.data import prepare_dataset, to_model_inputs
    from mlops_template.inference import OnnxModel
    from mlops_template.schema import (
        GradientBoostingModel,
        LinearModel,
        RandomForestModel,
        load_schema,
    )
    from mlops_template.train import train_model

    schema = load_schema(SCHEMA)
    text = any(f.type == "text" for f in schema.features)  # TF-IDF: linear models only
    cases: list[tuple[str, Path, Any]] = [("linear", SCHEMA, LinearModel())]
    if not quick and not text:
        cases += [
            ("random_forest", SCHEMA, RandomForestModel(type="random_forest")),
            (
                "gradient_boosting",
                SCHEMA,
                GradientBoostingModel(type="gradient_boosting"),
            ),
        ]
    if not text and TEXT_EXAMPLE.is_file():  # the tests' text example, where the data has none
        cases.append(("text (TF-IDF, linear)", TEXT_EXAMPLE, LinearModel()))
    print("\n## Prediction cache (keyed by the checked row) against the model call, µs per call")
    print(
        f"{'model':24} {'batch':>5} {'model':>8} {'all hit':>8} {'all miss':>9} {'break-even':>11}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for index, (name, path, spec) in enumerate(cases):
            schema = load_schema(path)
            processed, models = Path(tmp) / f"processed{index}", Path(tmp) / f"models{index}"
            prepare_dataset(schema, processed)
            train_model(schema.model_copy(update={"model": spec}), processed, models)
            model = OnnxModel.load(models)
            rows = synthetic_rows(64, schema_path=path)
            for batch in (1, 64):
                feed = to_model_inputs(rows.head(batch), model.card.features, model.card.inputs)
                number = 2000 if batch == 1 else 300
                call = _best_us(lambda: model.run(feed), number)  # noqa: B023
                warm = RowCache()
                warm.run(model, feed)
                hit = _best_us(lambda: warm.run(model, feed), number)  # noqa: B023
                miss = _best_us(lambda: RowCache().run(model, feed), number)  # noqa: B023
                saved, added = call - hit, miss - call
                even = added / (added + saved) if saved > 0 else float("inf")
                share = f"{even:10.0%}" if even <= 1 else "     never"
                print(f"{name:24} {batch:5} {call:8.1f} {hit:8.1f} {miss:9.1f} {share:>11}")
