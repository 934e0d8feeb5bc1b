"""Processors: partition operators that run shared `features/` code on micro-batches."""
