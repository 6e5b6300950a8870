"""Benchmarks: how fast the port comes back, and what the daemon costs (``python -m benchmarks.run``)."""
