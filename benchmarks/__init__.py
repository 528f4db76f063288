"""Benchmarks: speed and memory against a baseline measured in the same run."""
