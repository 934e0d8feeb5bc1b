"""OHLCV candles: the definition both engines run.

A candle summarises one pair's trades in one tumbling window: open (first trade), high, low,
close (last trade), volume, VWAP (sum of price x volume over volume) and trade count. "First"
and "last" follow (timestamp_ms, trade_id), then arrival order, so ties resolve the same way
in every engine.

Aggregation is split in two so a stream can fold micro-batches: :func:`aggregate_trades` turns
trades into partial candles (one per pair and window), :func:`merge_partials` folds partials of
the same pair and window together. A batch engine calls `aggregate_trades` once over all trades;
the result is the same candle (sums may differ in the last bits of a float, far below 1e-9).
"""

from __future__ import annotations

import numpy as np

from features.windows import TumblingWindow

# Columns of a partial candle (also the final candle's columns, with vwap added).
PARTIAL_COLUMNS = (
    "key",  # int: pair code
    "window_start_ms",
    "first_ts",
    "first_id",
    "open",
    "last_ts",
    "last_id",
    "close",
    "high",
    "low",
    "volume",
    "notional",  # sum of price * volume
    "trade_count",
)
CANDLE_VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")

Columns = dict[str, np.ndarray]


def aggregate_trades(
    window: TumblingWindow,
    key: np.ndarray,
    timestamp_ms: np.ndarray,
    trade_id: np.ndarray,
    price: np.ndarray,
    volume: np.ndarray,
) -> Columns:
    """Partial candles of a batch of trades, sorted by (key, window_start_ms).

    Input arrays are in arrival order; `key` holds non-negative ints (pair codes).
    """
    n = len(price)
    if n == 0:
        return {name: np.empty(0, dtype=_dtype(name)) for name in PARTIAL_COLUMNS}
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    tid = np.asarray(trade_id, dtype=np.int64)
    starts = window.start_of(ts)
    order = np.lexsort((tid, ts, starts, key))  # stable: arrival breaks remaining ties
    k, ws, ts, tid = key[order], starts[order], ts[order], tid[order]
    p = np.asarray(price, dtype=np.float64)[order]
    v = np.asarray(volume, dtype=np.float64)[order]
    boundary = np.r_[True, (k[1:] != k[:-1]) | (ws[1:] != ws[:-1])]
    first = np.flatnonzero(boundary)
    last = np.r_[first[1:] - 1, n - 1]
    return {
        "key": k[first],
        "window_start_ms": ws[first],
        "first_ts": ts[first],
        "first_id": tid[first],
        "open": p[first],
        "last_ts": ts[last],
        "last_id": tid[last],
        "close": p[last],
        "high": np.maximum.reduceat(p, first),
        "low": np.minimum.reduceat(p, first),
        "volume": np.add.reduceat(v, first),
        "notional": np.add.reduceat(p * v, first),
        "trade_count": np.diff(np.r_[first, n]).astype(np.int64),
    }


def merge_partials(older: Columns, newer: Columns) -> Columns:
    """Fold partial candles; rows of `newer` arrived after rows of `older` (ties keep order)."""
    both = {name: np.concatenate([older[name], newer[name]]) for name in PARTIAL_COLUMNS}
    n = len(both["key"])
    if n == 0:
        return both
    arrival = np.arange(n)
    order = np.lexsort((arrival, both["window_start_ms"], both["key"]))
    rows = {name: col[order] for name, col in both.items()}
    boundary = np.r_[
        True,
        (rows["key"][1:] != rows["key"][:-1])
        | (rows["window_start_ms"][1:] != rows["window_start_ms"][:-1]),
    ]
    first = np.flatnonzero(boundary)
    group = np.cumsum(boundary) - 1
    # open: the partial whose first trade sorts first; close: whose last trade sorts last
    open_pick = _pick(group, rows["first_ts"], rows["first_id"], first, smallest=True)
    close_pick = _pick(group, rows["last_ts"], rows["last_id"], first, smallest=False)
    return {
        "key": rows["key"][first],
        "window_start_ms": rows["window_start_ms"][first],
        "first_ts": rows["first_ts"][open_pick],
        "first_id": rows["first_id"][open_pick],
        "open": rows["open"][open_pick],
        "last_ts": rows["last_ts"][close_pick],
        "last_id": rows["last_id"][close_pick],
        "close": rows["close"][close_pick],
        "high": np.maximum.reduceat(rows["high"], first),
        "low": np.minimum.reduceat(rows["low"], first),
        "volume": np.add.reduceat(rows["volume"], first),
        "notional": np.add.reduceat(rows["notional"], first),
        "trade_count": np.add.reduceat(rows["trade_count"], first),
    }


def _pick(
    group: np.ndarray, ts: np.ndarray, tid: np.ndarray, first: np.ndarray, *, smallest: bool
) -> np.ndarray:
    """Index of the row per group with the smallest (or largest) (ts, id); ties: first (last)."""
    n = len(group)
    pos = np.arange(n)
    if smallest:
        order = np.lexsort((pos, tid, ts, group))
        return order[first]  # first row of each group in the sorted order
    order = np.lexsort((pos, tid, ts, group))
    last = np.r_[first[1:] - 1, n - 1]
    return order[last]


def finalize(partials: Columns) -> Columns:
    """Final candle columns from partials: adds VWAP."""
    out = {name: partials[name] for name in ("key", "window_start_ms", *CANDLE_VALUE_COLUMNS[:5])}
    out["vwap"] = partials["notional"] / partials["volume"]
    out["trade_count"] = partials["trade_count"]
    return out


def _dtype(name: str) -> type:
    ints = {"key", "window_start_ms", "first_ts", "first_id", "last_ts", "last_id", "trade_count"}
    return np.int64 if name in ints else np.float64
