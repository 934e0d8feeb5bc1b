"""Errors of the flows: each message names the input that failed, in one line."""

from __future__ import annotations


class FlowInputError(RuntimeError):
    """A task failed on a given input (a date range, a pair, a table, a model version)."""
