"""Run every benchmark and print its figures: `make bench` or `python -m benchmarks`."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from . import pipeline, serving


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it runs")
    args = parser.parse_args()
    pipeline.run(quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        serving.bench_serving(
            pipeline.train(Path(tmp)),
            duration=1 if args.quick else serving.DURATION,
            rounds=1 if args.quick else serving.ROUNDS,
            peer=not args.quick,  # installing MLServer takes minutes the first time
        )


main()
