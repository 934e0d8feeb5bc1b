"""Pipelines: processors wired to topics, ready to run."""
