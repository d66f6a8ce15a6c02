"""Benchmarks: `make bench` prints figures; tests never assert wall-clock time."""
