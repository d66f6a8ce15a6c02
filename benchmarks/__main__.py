"""Run every benchmark and print its figures: `make bench` or `python -m benchmarks`."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from . import cache, pipeline, serving


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it runs")
    args = parser.parse_args()
    pipeline.run(quick=args.quick)
    cache.bench_cache(quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        models = pipeline.train(Path(tmp))
        # [if dask]
        from . import distributed

        distributed.bench_distributed(
            models,
            Path(tmp),
            rows=50_000 if args.quick else 2_000_000,
            rounds=1 if args.quick else 3,
        )
        # [end dask]
        serving.bench_serving(
            models,
            duration=1 if args.quick else serving.DURATION,
            rounds=1 if args.quick else serving.ROUNDS,
            peer=not args.quick,  # installing MLServer takes minutes the first time
        )


if __name__ == "__main__":  # Dask's worker processes import this module again
    main()
