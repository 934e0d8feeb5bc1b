"""Candles of a backfill: every window's non-late trades through `features.candles`.

`batch.file_results` aggregates, inside each file's task, the windows only that file has trades
for; :func:`candles_frame` adds the windows several files share, aggregated per pair and
duration after a shuffle of just their trades. Each candle is `aggregate_trades` + `finalize`
over all of its window's non-late trades, as in the stream. A candle exists only for a window
with at least one non-late trade.

All windows of the input are computed (also those outside the backfill range): the ones before
the range are the indicators' history; the caller keeps only the range's rows for the table.
:func:`candles_of_pair` is the same computation over one pair's whole trade table in one call
(a reference for tests and small inputs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame

from batch.arrival_order import ArrivalOrder, arrival_permutation
from batch.file_results import CANDLE, TRADE, decode_trades
from features.candles import aggregate_trades, finalize
from features.schemas.candle import CANDLE_ARROW_SCHEMA
from features.windows import NO_STREAM_TIME, TumblingWindow, late_mask


def candles_of_shared_windows(rows: pa.Table) -> pa.Table:
    """Candles of one pair and duration from the trades of windows several files share.

    `rows` are `FILE_RESULT_SCHEMA` rows of kind `trade`, each carrying one file's trades of
    those windows (already past the lateness rule). The trades are put in file order
    (`source_index`, `row_index`): for trades with equal (timestamp, trade id) that is their
    arrival order in both arrival modes, which `aggregate_trades` keeps.
    """
    if rows.num_rows == 0:
        return CANDLE_ARROW_SCHEMA.empty_table()
    pair = rows["pair"][0].as_py()
    size_ms = int(rows["window_ms"][0].as_py())
    trades = pa.concat_tables([decode_trades(b) for b in rows["shared_trades"].to_pylist()])
    order = np.lexsort((trades["row_index"].to_numpy(), trades["source_index"].to_numpy()))
    trades = trades.take(pa.array(order))
    key = np.zeros(trades.num_rows, dtype=np.int64)
    candles = finalize(aggregate_trades(
        TumblingWindow(size_ms), key, trades["timestamp_ms"].to_numpy(),
        trades["trade_id"].to_numpy(), trades["price"].to_numpy(), trades["volume"].to_numpy(),
    ))
    return candle_table(pair, size_ms, candles)


def candles_frame(file_results: DataFrame) -> DataFrame:
    """All candles of the input (every pair and duration) from the per-file results."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    own = file_results.where(F.col("kind") == CANDLE).select(*CANDLE_ARROW_SCHEMA.names)
    shared = (
        file_results.where(F.col("kind") == TRADE)
        .select("pair", "window_ms", "source_index", "shared_trades")
        .groupBy("pair", "window_ms")
        .applyInArrow(candles_of_shared_windows, from_arrow_schema(CANDLE_ARROW_SCHEMA))
    )
    return own.unionByName(shared)


def candles_of_pair(
    trades: pa.Table, durations_ms: Sequence[int], grace_ms: int, arrival: ArrivalOrder
) -> pa.Table:
    """One pair's candles for every duration from its whole trade table in one call.

    `trades` holds one pair's valid trades with `source_index` and `row_index` (file order), in
    any row order; the arrival order is rebuilt from them.
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
