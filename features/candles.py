"""OHLCV candles: the definition both engines run.

A candle summarises one pair's trades in one tumbling window: open (first trade), high, low,
close (last trade), volume, VWAP (sum of price x volume over volume) and trade count. "First"
and "last" follow (timestamp_ms, trade_id), then arrival order, so ties resolve the same way
in every engine.

Both engines call :func:`aggregate_trades` over all the trades of a window (the stream keeps the
trades of open windows and aggregates at close), and it sorts them canonically first, so a
candle's every bit is the same whatever the arrival order, micro-batching or engine.
"""

from __future__ import annotations

import numpy as np

from features.windows import TumblingWindow

# Columns of an aggregation (the final candle adds vwap).
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
    *,
    presorted: bool = False,
) -> Columns:
    """One row per (key, window) of the trades, sorted by (key, window_start_ms).

    Input arrays are in arrival order; `key` holds non-negative ints (pair codes). With
    `presorted`, the caller has already put them in the order this function sorts them into,
    (key, timestamp, trade id) with ties in arrival order (see :func:`key_time_order`): the
    sort is skipped and the result is the same.
    """
    n = len(price)
    if n == 0:
        return {name: np.empty(0, dtype=_dtype(name)) for name in PARTIAL_COLUMNS}
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    tid = np.asarray(trade_id, dtype=np.int64)
    starts = window.start_of(ts)
    p = np.asarray(price, dtype=np.float64)
    v = np.asarray(volume, dtype=np.float64)
    k, ws = key, starts
    if not presorted:  # a window's start grows with its timestamp: (key, ts, tid) order suffices
        order = np.lexsort((tid, ts, starts, key))  # stable: arrival breaks remaining ties
        k, ws, ts, tid, p, v = key[order], starts[order], ts[order], tid[order], p[order], v[order]
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


def key_time_order(key: np.ndarray, timestamp_ms: np.ndarray, trade_id: np.ndarray) -> np.ndarray:
    """The permutation that sorts trades in arrival order by (key, timestamp, trade id), ties
    in arrival order: `aggregate_trades`' order for any window size. Trades already in time
    order per key (a file sorted by event time) take one stable sort by key and a check."""
    if len(key) == 0:
        return np.empty(0, dtype=np.int64)
    small = key.astype(np.int16) if int(key.max()) < 2**15 else key  # radix sort
    order = np.argsort(small, kind="stable")
    k, ts, tid = key[order], timestamp_ms[order], trade_id[order]
    same_key = k[1:] == k[:-1]
    later = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (tid[1:] >= tid[:-1]))
    if bool(np.all(~same_key | later)):
        return order
    return np.lexsort((trade_id, timestamp_ms, key))


def finalize(partials: Columns) -> Columns:
    """Final candle columns from partials: adds VWAP."""
    out = {name: partials[name] for name in ("key", "window_start_ms", *CANDLE_VALUE_COLUMNS[:5])}
    out["vwap"] = partials["notional"] / partials["volume"]
    out["trade_count"] = partials["trade_count"]
    return out


def _dtype(name: str) -> type:
    ints = {"key", "window_start_ms", "first_ts", "first_id", "last_ts", "last_id", "trade_count"}
    return np.int64 if name in ints else np.float64
