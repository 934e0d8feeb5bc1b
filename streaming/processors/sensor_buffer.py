"""The window processor's buffer of SZ readings, sorted by client and event time, whose append
costs the poll's readings, not the buffer's.

The buffer holds every reading an open 10-minute window needs: at 1,000 readings/s, 600,000 of
them. Each poll adds a few, scattered over the clients, so one sorted array would be copied
whole per poll (six `np.insert` calls over 600,000 rows: 5-10 ms a poll, measured, against
0.8 ms while the buffer held one minute). Here a poll's readings go into a small sorted level,
`recent`, which is merged into the large one, `main`, once it holds 1/32 of it (at least 4,096
rows): a reading is copied a few dozen times over its life instead of once per poll. Readers
that need one client's readings take them from both levels (`context`); pruning and offsets
work level by level; rare readers (a revocation, a hand-over) flatten the two into one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from features.sensors.vectors import KEY_SPAN
from streaming.processors.sensor_history import merge_positions, ranges

#: `recent` is merged into `main` when it holds max(RECENT_MIN, len(main) // RECENT_SHARE) rows
RECENT_MIN = 4_096
RECENT_SHARE = 32


@dataclass
class Readings:
    """Readings as columns, sorted by (key, value); key = client code * KEY_SPAN + event time."""

    key: np.ndarray
    code: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    offset: np.ndarray
    partition: np.ndarray

    @classmethod
    def empty(cls) -> Readings:
        ints = [np.empty(0, dtype=np.int64) for _ in range(5)]
        return cls(ints[0], ints[1], ints[2], np.empty(0, dtype=np.float64), ints[3], ints[4])

    @classmethod
    def sorted_batch(cls, codes: np.ndarray, ts: np.ndarray, values: np.ndarray,
                     offsets: np.ndarray, partitions: np.ndarray) -> Readings:
        key = codes * KEY_SPAN + ts
        order = np.lexsort((values, key))
        return cls(key[order], codes[order], ts[order], values[order], offsets[order],
                   partitions[order])

    def __len__(self) -> int:
        return len(self.key)

    def columns(self) -> list[np.ndarray]:
        return [getattr(self, f.name) for f in fields(self)]

    def take(self, rows: np.ndarray) -> Readings:
        return Readings(*(column[rows] for column in self.columns()))

    def keep(self, mask: np.ndarray) -> None:
        if not mask.all():
            for f in fields(self):
                setattr(self, f.name, getattr(self, f.name)[mask])

    def insert(self, batch: Readings) -> None:
        """Merge a batch sorted by (key, value) in, each column copied once."""
        if not len(batch):
            return
        pos = merge_positions(self.key, self.value, batch.key, batch.value)
        for f, column in zip(fields(self), batch.columns(), strict=True):
            setattr(self, f.name, np.insert(getattr(self, f.name), pos, column))


@dataclass
class Context:
    """Some clients' readings, sorted by (key, value): the two columns a window needs (client
    and event time are the key's quotient and remainder by KEY_SPAN)."""

    key: np.ndarray
    value: np.ndarray


class ReadingBuffer:
    """Two sorted levels of readings (see the module docstring)."""

    def __init__(self) -> None:
        self.main = Readings.empty()
        self.recent = Readings.empty()

    def __len__(self) -> int:
        return len(self.main) + len(self.recent)

    def levels(self) -> tuple[Readings, Readings]:
        return self.main, self.recent

    def append(self, batch: Readings) -> None:
        self.recent.insert(batch)
        if len(self.recent) >= max(RECENT_MIN, len(self.main) // RECENT_SHARE):
            self.flat()

    def flat(self) -> Readings:
        """Merge `recent` into `main`; returns `main`, now every reading."""
        if len(self.recent):
            self.main.insert(self.recent)
            self.recent = Readings.empty()
        return self.main

    def keep(self, mask_of: Callable[[Readings], np.ndarray]) -> None:
        """Keep the readings `mask_of(level)` selects, level by level."""
        for level in self.levels():
            level.keep(mask_of(level))

    def context(self, after: np.ndarray, until: np.ndarray) -> Context:
        """Per i, the readings with after[i] < key < until[i] (each range within one client,
        ranges in client order), from both levels, sorted by (key, value). Only the key and
        value columns are copied: a context is most of the buffer when a poll touches most
        clients (at 10,000 readings/s, a window's 6 million readings per second)."""
        parts = []
        for level in self.levels():
            lo = np.searchsorted(level.key, after, side="right")
            hi = np.searchsorted(level.key, until, side="left")
            rows = ranges(lo, hi)
            parts.append(Context(level.key[rows], level.value[rows]))
        main, recent = parts
        if not len(recent.key):
            return main
        pos = merge_positions(main.key, main.value, recent.key, recent.value)
        return Context(np.insert(main.key, pos, recent.key), np.insert(main.value, pos,
                                                                       recent.value))
