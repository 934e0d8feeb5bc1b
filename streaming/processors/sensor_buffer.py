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
from streaming.processors.sensor_history import ranges

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
        """Merge a sorted batch in: at the batch's positions, or (same client and event time
        as a held reading or another of the batch) by a sort that orders them by value, as
        the canonical order says."""
        if not len(batch):
            return
        pos = np.searchsorted(self.key, batch.key, side="left")
        ties = (bool(len(self.key))
                and bool((self.key[np.minimum(pos, len(self.key) - 1)] == batch.key).any()))
        if ties or bool((np.diff(batch.key) == 0).any()):
            both = [np.r_[a, b] for a, b in zip(self.columns(), batch.columns(), strict=True)]
            merged = np.lexsort((both[3], both[0]))  # (key, value)
            for f, column in zip(fields(self), both, strict=True):
                setattr(self, f.name, column[merged])
            return
        for f, column in zip(fields(self), batch.columns(), strict=True):
            setattr(self, f.name, np.insert(getattr(self, f.name), pos, column))


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

    def context(self, after: np.ndarray, until: np.ndarray) -> Readings:
        """Per i, the readings with after[i] < key < until[i] (each range within one client,
        ranges in client order), from both levels, sorted by (key, value)."""
        parts = []
        for level in self.levels():
            lo = np.searchsorted(level.key, after, side="right")
            hi = np.searchsorted(level.key, until, side="left")
            parts.append(level.take(ranges(lo, hi)))
        main, recent = parts
        if not len(recent):
            return main
        if not len(main):
            return recent
        both = Readings(*(np.r_[a, b] for a, b in zip(main.columns(), recent.columns(),
                                                       strict=True)))
        return both.take(np.lexsort((both.value, both.key)))
