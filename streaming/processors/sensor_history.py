"""Sorted columnar rows keyed by composite key (`client * KEY_SPAN + event time`): the join's
histories and events, as numpy arrays that a poll updates in place of one Python object per
row."""

from __future__ import annotations

from typing import Any

import numpy as np

ColumnSpec = Any  # a numpy dtype, or (dtype, width) for a 2-D column


def ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenation of `arange(lo[i], hi[i])` over i (empty ranges allowed)."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(lo - (ends - lengths), lengths) + np.arange(total)


def insert_rows(column: np.ndarray, pos: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`np.insert(column, pos, values, axis=0)`, rows of a 2-D column moved as one value each:
    numpy inserts along axis 0 of a 2-D array element by element, 3-8x slower than the same
    bytes as one 1-D array of row-sized values (measured at 100k-700k rows, 10-10k inserted).
    Every poll of the join inserts into histories of every held row, so this is its
    per-poll floor."""
    if column.ndim == 1:
        return np.insert(column, pos, values)
    width = column.shape[1]
    row = np.dtype((np.void, column.dtype.itemsize * width))
    merged = np.insert(np.ascontiguousarray(column).view(row).ravel(), pos,
                       np.ascontiguousarray(values, dtype=column.dtype).view(row).ravel())
    return merged.view(column.dtype).reshape(-1, width)


def merge_positions(key: np.ndarray, tie: np.ndarray, new_key: np.ndarray,
                    new_tie: np.ndarray) -> np.ndarray:
    """Where `np.insert` puts each new row so that rows sorted by (key, tie) stay so (both
    inputs sorted that way; a new row goes after held rows equal to it): before the first
    held row of a greater key, or of the same key and a greater tie. Held rows of a new row's
    key are few (a client's readings sharing a time), so only those are compared."""
    pos = np.searchsorted(key, new_key, side="left")
    end = np.searchsorted(key, new_key, side="right")
    tied = np.flatnonzero(end > pos)
    if len(tied):
        lengths = end[tied] - pos[tied]
        owner = np.repeat(np.arange(len(tied)), lengths)
        not_above = tie[ranges(pos[tied], end[tied])] <= new_tie[tied][owner]
        pos[tied] += np.bincount(owner, weights=not_above, minlength=len(tied)).astype(np.int64)
    return pos


class Rows:
    """Rows sorted by `key`, then (optionally) by one integer column given at insertion."""

    def __init__(self, **columns: ColumnSpec) -> None:
        self.key = np.empty(0, dtype=np.int64)
        self.cols: dict[str, np.ndarray] = {}
        for name, spec in columns.items():
            dtype, width = spec if isinstance(spec, tuple) else (spec, 0)
            shape = (0, width) if width else (0,)
            self.cols[name] = np.empty(shape, dtype=dtype)

    def __len__(self) -> int:
        return len(self.key)

    def insert(self, keys: np.ndarray, sort_by: str | None = None, **values: np.ndarray) -> None:
        """Merge rows in, each column copied once: after the held rows of the same key and
        `sort_by` value (before those of the same key, without `sort_by`)."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return
        tie = (np.asarray(values[sort_by]) if sort_by is not None
               else np.zeros(len(keys), dtype=np.int64))
        order = np.lexsort((tie, keys))
        keys = keys[order]
        values = {name: np.asarray(v)[order] for name, v in values.items()}
        if sort_by is None:
            pos = np.searchsorted(self.key, keys, side="left")
        else:
            pos = merge_positions(self.key, self.cols[sort_by], keys, values[sort_by])
        self.key = np.insert(self.key, pos, keys)
        for name in self.cols:
            self.cols[name] = insert_rows(self.cols[name], pos, values[name])

    def find(self, keys: np.ndarray, ties: np.ndarray | None = None,
             tie: str | None = None) -> np.ndarray:
        """Per key, the index of the row with that key (and `ties[i]` in column `tie`, among
        at most a few rows per key), or -1."""
        keys = np.asarray(keys, dtype=np.int64)
        out = np.full(len(keys), -1, dtype=np.int64)
        if not len(self.key) or not len(keys):
            return out
        lo = np.searchsorted(self.key, keys, side="left")
        hi = np.searchsorted(self.key, keys, side="right")
        if ties is None or tie is None:
            hit = hi > lo
            out[hit] = lo[hit]
            return out
        column = self.cols[tie]
        for step in range(int((hi - lo).max(initial=0))):
            at = lo + step
            hit = (at < hi) & (out < 0)
            hit[hit] = column[at[hit]] == ties[hit]
            out[hit] = at[hit]
        return out

    def keep(self, mask: np.ndarray) -> None:
        if mask.all():
            return
        self.key = self.key[mask]
        self.cols = {name: column[mask] for name, column in self.cols.items()}
