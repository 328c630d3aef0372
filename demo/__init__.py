"""The migration demo: `python -m demo`."""
