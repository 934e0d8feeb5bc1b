"""Indicators of a backfill: per pair and duration, `features.indicators` over the candle series.

Spark cuts each (pair, window_ms) series into chunks of consecutive candles, each with copies of
the `MAX_WARMUP - 1` candles before it, and runs :func:`indicators_of_series` on each chunk
(`applyInArrow`), so indicator work spreads over every core. The series is the input's
candles, preceded by **history**: candles of earlier windows already in the candles table (only
those before the input's first window: where the input has trades it is the truth; read by count
per series, see `batch.table_history`). Rows of the backfill range `[start_ms, end_ms)` get values
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


CHUNK_CANDLES = 25_000
"""Candles of one series per indicator task (each also reads the MAX_WARMUP - 1 before it)."""

_HISTORY_COPY = "history_copy"


def _grouped(
    history: HistoryByKey, start_ms: int, end_ms: int
) -> Callable[[pa.Table], pa.Table]:
    """One task: the candles of one time chunk of one series, plus copies of the
    `MAX_WARMUP - 1` candles before it (flagged `history_copy`); table history joins the
    series' first chunk."""

    def run(rows: pa.Table) -> pa.Table:
        if rows.num_rows == 0:
            return INDICATOR_ARROW_SCHEMA.empty_table()
        key = (rows["pair"][0].as_py(), int(rows["window_ms"][0].as_py()))
        chunk = int(rows["chunk"][0].as_py())
        own = rows.filter(pc.invert(rows[_HISTORY_COPY]))
        if own.num_rows == 0:  # copies of the series' last candles, past its last chunk
            return INDICATOR_ARROW_SCHEMA.empty_table()
        first_own = int(pc.min(own["window_start_ms"]).as_py())
        return indicators_of_series(
            rows.select(CANDLE_ARROW_SCHEMA.names),
            history.get(key) if chunk == 0 else None,
            max(start_ms, first_own), end_ms,
        )

    return run


def indicators_frame(
    candles: DataFrame,
    history: HistoryByKey,
    start_ms: int,
    end_ms: int,
    chunk_candles: int | None = None,
) -> DataFrame:
    """Indicator rows of the range for every pair and duration, as a Spark DataFrame.

    `candles` are all the input's candles (history included); only windows that can matter are
    shipped to the Python workers: those before `end_ms`. Each series is cut into chunks of
    `chunk_candles` (default `CHUNK_CANDLES`) consecutive candles, numbered in window order, one
    task each, so the work spreads over every core whatever the number of pairs and durations.
    A chunk also gets copies of the `MAX_WARMUP - 1` candles before it, so its values equal the
    whole series' (the warm-up a range gets from before its start). Chunks with no candle in
    the range return nothing.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    chunk_candles = CHUNK_CANDLES if chunk_candles is None else chunk_candles
    if chunk_candles < MAX_WARMUP - 1:
        raise ValueError(f"chunk_candles must be at least {MAX_WARMUP - 1}")
    order = Window.partitionBy("pair", "window_ms").orderBy("window_start_ms")
    index = F.col("index")
    chunk = F.floor(index / F.lit(chunk_candles)).cast("long")
    copies_to_next = (index % F.lit(chunk_candles)) >= F.lit(chunk_candles - (MAX_WARMUP - 1))
    placed = F.when(
        copies_to_next,
        F.array(F.struct(chunk.alias("chunk"), F.lit(False).alias(_HISTORY_COPY)),
                F.struct((chunk + 1).alias("chunk"), F.lit(True).alias(_HISTORY_COPY))),
    ).otherwise(F.array(F.struct(chunk.alias("chunk"), F.lit(False).alias(_HISTORY_COPY))))
    spark = candles.sparkSession
    partitions = max(
        int(spark.conf.get("spark.sql.shuffle.partitions") or 1),
        2 * spark.sparkContext.defaultParallelism,
    )
    return (
        candles.where(F.col("window_start_ms") < F.lit(end_ms))
        .withColumn("index", F.row_number().over(order) - 1)
        .select(*CANDLE_ARROW_SCHEMA.names, F.explode(placed).alias("placed"))
        .select(*CANDLE_ARROW_SCHEMA.names, "placed.chunk", f"placed.{_HISTORY_COPY}")
        .repartition(partitions, "pair", "window_ms", "chunk")
        .groupBy("pair", "window_ms", "chunk")
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
