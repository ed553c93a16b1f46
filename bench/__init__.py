"""Benchmarks: what the exporter costs, against a naive loop and against the floor."""
