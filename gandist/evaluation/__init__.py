"""Metrics of a generator's output."""
