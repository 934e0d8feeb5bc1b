"""Indicators of a backfill: per pair and duration, `features.indicators` over the candle series.

Spark groups candles by (pair, window_ms) (`applyInArrow`); :func:`indicators_of_series` runs on
each group. The series is the input's candles, preceded by **history**: candles of earlier
windows already in the candles table (only those before the input's first window: where the
input has trades it is the truth). Rows of the backfill range `[start_ms, end_ms)` get values
from `compute_indicators`, fed with the `MAX_WARMUP - 1` candles before the range, so a backfill
of days 2-3 equals days 2-3 inside a backfill of days 1-3, and equals the stream (which keeps
the same number of candles). No gap filling: the series is the candles that exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from features.indicators import INDICATOR_COLUMNS, INPUT_COLUMNS, MAX_WARMUP, compute_indicators
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA

HistoryByKey = Mapping[tuple[str, int], pa.Table]
"""(pair, window_ms) -> earlier candles (`CANDLE_ARROW_SCHEMA`), any order."""


def indicators_of_series(
    candles: pa.Table, history: pa.Table | None, start_ms: int, end_ms: int
) -> pa.Table:
    """Indicator rows (`INDICATOR_ARROW_SCHEMA`) for the candles of one pair and duration whose
    window starts in `[start_ms, end_ms)`."""
    candles = candles.select(CANDLE_ARROW_SCHEMA.names).cast(CANDLE_ARROW_SCHEMA)
    if history is not None and history.num_rows and candles.num_rows:
        first_input_window = candles["window_start_ms"].to_numpy().min()
        older = history.select(CANDLE_ARROW_SCHEMA.names).cast(CANDLE_ARROW_SCHEMA)
        older = older.filter(pc.less(older["window_start_ms"], first_input_window))
        candles = pa.concat_tables([older, candles])
    if candles.num_rows == 0:
        return INDICATOR_ARROW_SCHEMA.empty_table()
    candles = candles.sort_by("window_start_ms")
    starts = candles["window_start_ms"].to_numpy()
    first = int(np.searchsorted(starts, start_ms, side="left"))
    stop = int(np.searchsorted(starts, end_ms, side="left"))
    if first >= stop:
        return INDICATOR_ARROW_SCHEMA.empty_table()
    lo = max(0, first - (MAX_WARMUP - 1))
    series = {name: candles[name].to_numpy()[lo:stop] for name in INPUT_COLUMNS}
    values = compute_indicators(series, start=first - lo)
    rows = candles.slice(first, stop - first)
    return pa.table(
        {
            "pair": rows["pair"],
            "window_ms": rows["window_ms"],
            "window_start_ms": rows["window_start_ms"],
            "window_end_ms": rows["window_end_ms"],
            "close": rows["close"],
            **{name: pa.array(values[name], pa.float64()) for name in INDICATOR_COLUMNS},
        },
        schema=INDICATOR_ARROW_SCHEMA,
    )


def _grouped(
    history: HistoryByKey, start_ms: int, end_ms: int
) -> Callable[[pa.Table], pa.Table]:
    def run(candles: pa.Table) -> pa.Table:
        if candles.num_rows == 0:
            return INDICATOR_ARROW_SCHEMA.empty_table()
        key = (candles["pair"][0].as_py(), int(candles["window_ms"][0].as_py()))
        return indicators_of_series(candles, history.get(key), start_ms, end_ms)

    return run


def indicators_frame(
    candles: DataFrame, history: HistoryByKey, start_ms: int, end_ms: int
) -> DataFrame:
    """Indicator rows of the range for every pair and duration, as a Spark DataFrame.

    `candles` are all the input's candles (history included); only windows that can matter are
    shipped to the Python workers: those before `end_ms`.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    return (
        candles.where(F.col("window_start_ms") < F.lit(end_ms))
        .groupBy("pair", "window_ms")
        .applyInArrow(_grouped(history, start_ms, end_ms),
                      from_arrow_schema(INDICATOR_ARROW_SCHEMA))
    )


def tail_per_series(
    history: pa.Table, keep: int = MAX_WARMUP - 1
) -> dict[tuple[str, int], pa.Table]:
    """Split table candles by (pair, window_ms), keeping the last `keep` windows of each."""
    out: dict[tuple[str, int], pa.Table] = {}
    if history.num_rows == 0:
        return out
    history = history.select(CANDLE_ARROW_SCHEMA.names).cast(CANDLE_ARROW_SCHEMA)
    history = history.sort_by([("pair", "ascending"), ("window_ms", "ascending"),
                               ("window_start_ms", "ascending")])
    pairs = history["pair"].to_numpy(zero_copy_only=False)
    windows = history["window_ms"].to_numpy()
    boundary = np.r_[True, (pairs[1:] != pairs[:-1]) | (windows[1:] != windows[:-1])]
    starts = np.flatnonzero(boundary)
    stops = np.r_[starts[1:], len(pairs)]
    for first, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        begin = max(first, stop - keep)
        out[(str(pairs[begin]), int(windows[begin]))] = history.slice(begin, stop - begin)
    return out
