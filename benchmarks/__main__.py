"""Run every benchmark and print its figures: `make bench` or `python -m benchmarks`."""

from __future__ import annotations

import argparse

from . import pipeline


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it runs")
    args = parser.parse_args()
    pipeline.run(quick=args.quick)


main()
