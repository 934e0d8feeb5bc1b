"""Counted events logged as one summary line per interval, not one line per event.

A burst of bad input (thousands of rejected trades, a backlog of rows the predictor skips)
would otherwise flood the log with a line per record, although the dead-letter topic (or the
counts) already hold each one. :class:`IntervalSummary` counts events by kind and logs, at most
once per `interval_s`, one line: how many of each kind since the last line, with the latest
example of each; `flush()` logs what is left (at exit).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any


class IntervalSummary:
    """Counts by kind, logged through `emit(event, **fields)` every `interval_s` seconds."""

    def __init__(self, emit: Callable[..., Any], event: str, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 tags: dict[str, Any] | None = None) -> None:
        self.emit = emit
        self.event = event
        self.tags = tags or {}
        self.interval_s = interval_s
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._since = clock()

    def add(self, kind: str, example: str) -> None:
        """Count one event of `kind` (`example` describes it) and log if the interval is over."""
        self.counts[kind] += 1
        self.examples[kind] = example
        self.maybe_log()

    def maybe_log(self) -> None:
        if self.counts and self.clock() - self._since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """Log the counts since the last line (nothing when there are none) and start anew."""
        now = self.clock()
        if self.counts:
            self.emit(self.event, **self.tags, seconds=round(now - self._since, 1),
                      total=sum(self.counts.values()), counts=dict(self.counts),
                      latest=dict(self.examples))
        self.counts.clear()
        self.examples.clear()
        self._since = now
