"""Stable trade ids for sources that have none (the 2018 Kraken CSV archives).

A derived id is `timestamp_us * 1000 + k`, where `k` is the row's position among rows with the
same microsecond timestamp, in file order. It is stable (the same file gives the same ids),
unique within a pair, and sorts like (timestamp, arrival), so open and close are the same in
every engine. Up to 1000 trades may share one microsecond.
"""

from __future__ import annotations

import numpy as np

MAX_TRADES_PER_MICROSECOND = 1000


def seconds_to_microseconds(seconds: np.ndarray) -> np.ndarray:
    """Float epoch seconds (as Kraken prints them) to integer microseconds, rounded."""
    return np.rint(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def derive_trade_ids(timestamp_us: np.ndarray) -> np.ndarray:
    """Ids for rows in file order: `timestamp_us * 1000 + rank within equal timestamps`.

    Rows sharing a timestamp need not be adjacent; the rank counts earlier rows with the
    same timestamp.
    """
    ts = np.asarray(timestamp_us, dtype=np.int64)
    if len(ts) == 0:
        return ts.copy()
    order = np.argsort(ts, kind="stable")
    sorted_ts = ts[order]
    starts = np.r_[True, sorted_ts[1:] != sorted_ts[:-1]]
    group_start_index = np.maximum.accumulate(np.where(starts, np.arange(len(ts)), 0))
    rank_sorted = np.arange(len(ts)) - group_start_index
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    if rank.max(initial=0) >= MAX_TRADES_PER_MICROSECOND:
        raise ValueError("more than 1000 trades share one microsecond; cannot derive ids")
    return ts * MAX_TRADES_PER_MICROSECOND + rank
