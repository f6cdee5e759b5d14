"""Example applications built on the platform (read them as models, run them as benchmarks)."""
