"""Benchmarks (not collected by pytest): run as ``python -m tests.bench.<module>``."""
