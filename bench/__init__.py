"""Benchmarks of the charm against the manual procedure: `python -m bench`."""
