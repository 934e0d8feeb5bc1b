"""Candle and indicator rows, as both engines write them (topics, Delta tables, Feast).

A row is identified by (pair, window_ms, window_start_ms). `window_ms` is the candle duration, so
several durations share one topic and one table. Timestamps are epoch milliseconds, UTC.
"""

from __future__ import annotations

import pyarrow as pa

from features.indicators import INDICATOR_COLUMNS
from features.schemas.trade import MAX_PAIR_LENGTH

CANDLE_KEY_COLUMNS = ("pair", "window_ms", "window_start_ms")

CANDLE_ARROW_SCHEMA = pa.schema(
    [
        pa.field("pair", pa.string(), nullable=False),
        pa.field("window_ms", pa.int64(), nullable=False),
        pa.field("window_start_ms", pa.int64(), nullable=False),
        pa.field("window_end_ms", pa.int64(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("vwap", pa.float64(), nullable=False),
        pa.field("trade_count", pa.int64(), nullable=False),
    ]
)

INDICATOR_ARROW_SCHEMA = pa.schema(
    [
        pa.field("pair", pa.string(), nullable=False),
        pa.field("window_ms", pa.int64(), nullable=False),
        pa.field("window_start_ms", pa.int64(), nullable=False),
        pa.field("window_end_ms", pa.int64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        # NaN (not null, not 0) until the indicator's warm-up is reached
        *(pa.field(name, pa.float64(), nullable=False) for name in INDICATOR_COLUMNS),
    ]
)


def record_key(pair: str, window_ms: int, window_start_ms: int) -> str:
    """The Kafka key of a candle or indicator row: `pair|duration_ms|window_start_ms`."""
    return f"{pair}|{window_ms}|{window_start_ms}"


def pair_reason(pair: object) -> str | None:
    """Why `pair` cannot be a candle or indicator row's pair (None if it can): a string of 1 to
    `MAX_PAIR_LENGTH` characters (as a trade's) without `|`, the record key's separator."""
    if isinstance(pair, str) and 0 < len(pair) <= MAX_PAIR_LENGTH and "|" not in pair:
        return None
    return (f"schema: pair must be a string of 1-{MAX_PAIR_LENGTH} characters without '|', "
            "the key separator")
