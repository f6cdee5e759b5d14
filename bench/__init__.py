"""Benchmarks of the platform; `python -m bench --help`."""
