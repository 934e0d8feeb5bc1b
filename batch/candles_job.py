"""Candles of a backfill: per pair, the lateness rule then `features.candles`, every duration.

Spark groups the valid trades by pair (`applyInArrow`); :func:`candles_of_pair` runs on each
group. It puts the pair's trades in arrival order, drops per duration the trades the speed layer
would drop as late (`features.windows.late_mask`, same grace), and aggregates the rest with
`features.candles.aggregate_trades` + `finalize`. A candle exists only for a window with at
least one non-late trade, as in the stream.

All windows of the input are computed (also those outside the backfill range): the ones before
the range are the indicators' history; the caller keeps only the range's rows for the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame

from batch.arrival_order import ArrivalOrder, arrival_permutation
from features.candles import aggregate_trades, finalize
from features.schemas.candle import CANDLE_ARROW_SCHEMA
from features.windows import NO_STREAM_TIME, TumblingWindow, late_mask

TRADE_INPUT_COLUMNS = (
    "pair", "price", "volume", "trade_id", "timestamp_ms", "source_index", "row_index",
)


def candles_of_pair(
    trades: pa.Table, durations_ms: Sequence[int], grace_ms: int, arrival: ArrivalOrder
) -> pa.Table:
    """One pair's candles for every duration (`CANDLE_ARROW_SCHEMA`), sorted by duration, window.

    `trades` holds one pair's valid trades in any row order with `source_index` and `row_index`
    (file order), from which the arrival order is rebuilt.
    """
    if trades.num_rows == 0:
        return CANDLE_ARROW_SCHEMA.empty_table()
    pair = trades["pair"][0].as_py()
    order = arrival_permutation(
        arrival,
        trades["source_index"].to_numpy(),
        trades["row_index"].to_numpy(),
        trades["timestamp_ms"].to_numpy(),
    )
    ts = trades["timestamp_ms"].to_numpy()[order]
    tid = trades["trade_id"].to_numpy()[order]
    price = trades["price"].to_numpy()[order]
    volume = trades["volume"].to_numpy()[order]
    key = np.zeros(len(ts), dtype=np.int64)
    pieces = []
    for size_ms in durations_ms:
        window = TumblingWindow(size_ms, grace_ms)
        on_time = ~late_mask(window, key, ts, np.array([NO_STREAM_TIME], dtype=np.int64))
        candles = finalize(
            aggregate_trades(
                window, key[on_time], ts[on_time], tid[on_time], price[on_time], volume[on_time]
            )
        )
        pieces.append(candle_table(pair, size_ms, candles))
    return pa.concat_tables(pieces)


def candle_table(pair: str, size_ms: int, candles: dict[str, np.ndarray]) -> pa.Table:
    """Final candle columns of one pair and duration as `CANDLE_ARROW_SCHEMA` rows."""
    n = len(candles["window_start_ms"])
    starts = candles["window_start_ms"].astype(np.int64)
    return pa.table(
        {
            "pair": pa.array([pair] * n, pa.string()),
            "window_ms": pa.array(np.full(n, size_ms, dtype=np.int64)),
            "window_start_ms": pa.array(starts),
            "window_end_ms": pa.array(starts + size_ms),
            **{c: pa.array(candles[c]) for c in ("open", "high", "low", "close", "volume", "vwap")},
            "trade_count": pa.array(candles["trade_count"].astype(np.int64)),
        },
        schema=CANDLE_ARROW_SCHEMA,
    )


def _grouped(
    durations_ms: Sequence[int], grace_ms: int, arrival: ArrivalOrder
) -> Callable[[pa.Table], pa.Table]:
    durations = list(durations_ms)

    def run(trades: pa.Table) -> pa.Table:
        return candles_of_pair(trades, durations, grace_ms, arrival)

    return run


def candles_frame(
    valid_trades: DataFrame, durations_ms: Sequence[int], grace_ms: int, arrival: ArrivalOrder
) -> DataFrame:
    """All candles of the input, every pair and duration, as a Spark DataFrame."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return (
        valid_trades.select(*TRADE_INPUT_COLUMNS)
        .groupBy("pair")
        .applyInArrow(_grouped(durations_ms, grace_ms, arrival),
                      from_arrow_schema(CANDLE_ARROW_SCHEMA))
    )


