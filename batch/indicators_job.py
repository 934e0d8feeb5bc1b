"""Indicators of a backfill: per pair and duration, `features.indicators` over the candle series.

Spark cuts each (pair, window_ms) series into **month chunks**: the series' candles of one UTC
month of the range, each with copies of the `MAX_WARMUP - 1` candles before it, and runs
:func:`indicators_of_series` on each chunk (`mapInArrow`), so indicator work spreads over every
core. A chunk's output is exactly one partition of the tables (`pair`, `window_ms`, `month`): the
candles are placed in their chunks by one shuffle, whose persisted result both writes read, and
neither the indicators nor the writes shuffle again (each task computes the chunks it holds). The
warm-up copies are found by count: the driver collects each series' candles per day
(:func:`candle_day_counts`) and gives each chunk the latest days that hold `MAX_WARMUP - 1` candles
before it (:func:`month_chunks`), however sparse the pair.

The series is the input's candles, preceded by **history**: candles of earlier windows already
in the candles table (only those before the input's first window: where the input has trades it
is the truth; read by count per series, see `batch.table_history`). Rows of the backfill range
`[start_ms, end_ms)` get values from `compute_indicators`, fed with the `MAX_WARMUP - 1` candles
before the range, so a backfill of days 2-3 equals days 2-3 inside a backfill of days 1-3, and
equals the stream (which keeps the same number of candles). No gap filling: the series is the
candles that exist.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession

from features.indicators import INDICATOR_COLUMNS, INPUT_COLUMNS, MAX_WARMUP, compute_indicators
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA

DAY_MS = 86_400_000

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


SeriesKey = tuple[str, int]
"""(pair, window_ms)."""

CHUNK_COLUMN = "month"
"""The column naming a candle's chunk: the `YYYY-MM` month partition its indicator rows go to."""
IN_CHUNK_COLUMN = "in_chunk"
"""True for a chunk's own candles (window start inside its span), false for warm-up copies."""


@dataclass(frozen=True)
class MonthChunk:
    """One task of the indicators: a series' candles of one month of the range, plus the
    candles before it that its warm-up needs.

    Its rows are every candle of the series with `warmup_from_ms <= window_start_ms <
    stop_ms`; it computes the indicator rows of windows in `[first_ms, stop_ms)`, the part of
    month `month` inside the range, so its output is exactly one partition of the tables
    (`pair`, `window_ms`, `month`)."""

    pair: str
    window_ms: int
    month: str  # YYYY-MM, the table's partition value
    warmup_from_ms: int  # earliest window start it needs (day boundary), or NO_LOWER_BOUND
    first_ms: int
    stop_ms: int


NO_LOWER_BOUND = -(2**63)
"""`warmup_from_ms` of a chunk whose warm-up needs every earlier candle of the input (fewer
than `MAX_WARMUP - 1` before it): it then also takes the table's history."""


def month_spans(start_ms: int, end_ms: int) -> list[tuple[str, int, int]]:
    """The range `[start_ms, end_ms)` cut at UTC month starts: (`YYYY-MM`, first, stop)."""
    spans = []
    first = start_ms
    while first < end_ms:
        day = datetime.fromtimestamp(first / 1000, UTC)
        following = (datetime(day.year + 1, 1, 1, tzinfo=UTC) if day.month == 12
                     else datetime(day.year, day.month + 1, 1, tzinfo=UTC))
        stop = min(end_ms, int(following.timestamp() * 1000))
        spans.append((f"{day.year:04d}-{day.month:02d}", first, stop))
        first = stop
    return spans


def month_chunks(
    series: Iterable[SeriesKey],
    day_counts: Mapping[SeriesKey, Mapping[int, int]],
    start_ms: int,
    end_ms: int,
    warmup: int = MAX_WARMUP - 1,
) -> list[MonthChunk]:
    """The chunks of every series: one per month of the range.

    `day_counts` gives, per series, at least how many candles start on each UTC day (the day's
    start in ms; days without known candles absent): exact counts give the shortest warm-up, and
    fewer than there are (the candles each file aggregated alone, without the windows files
    share) only a longer one. A chunk's warm-up starts at the latest day boundary before its
    first window with at least `warmup` counted candles in between, so it holds the `warmup`
    candles before the chunk (its values equal the whole series'), however far back a sparse
    series' candles lie; without so many, every earlier candle (`NO_LOWER_BOUND`). A month
    without a candle of the series is an empty chunk: it computes nothing."""
    spans = month_spans(start_ms, end_ms)
    chunks = []
    for pair, window_ms in sorted(set(series)):
        counts = day_counts.get((pair, window_ms), {})
        days = sorted(counts)
        for month, first, stop in spans:
            warmup_from, held = NO_LOWER_BOUND, 0
            for day in reversed(days[:bisect_left(days, first)]):
                held += counts[day]
                if held >= warmup:
                    warmup_from = day
                    break
            chunks.append(MonthChunk(pair, window_ms, month, warmup_from, first, stop))
    return chunks


def candle_day_counts(candles: DataFrame, end_ms: int) -> dict[SeriesKey, dict[int, int]]:
    """Per series, the number of `candles` before `end_ms` starting on each UTC day (one small
    aggregation job: a few rows per series and day)."""
    from pyspark.sql import functions as F

    day = (F.col("window_start_ms") - F.pmod(F.col("window_start_ms"), F.lit(DAY_MS)))
    rows = (candles.where(F.col("window_start_ms") < F.lit(end_ms))
            .groupBy("pair", "window_ms", day.alias("day_ms")).count().collect())
    counts: dict[SeriesKey, dict[int, int]] = {}
    for row in rows:
        counts.setdefault((str(row["pair"]), int(row["window_ms"])), {})[int(row["day_ms"])] = (
            int(row["count"]))
    return counts


def chunked_candles(candles: DataFrame, chunks: Sequence[MonthChunk]) -> DataFrame:
    """`candles` placed in their chunks: `CANDLE_ARROW_SCHEMA` columns, `month` (the chunk) and
    `in_chunk` (false for a warm-up copy of an earlier candle), hash-partitioned by (`pair`,
    `window_ms`, `month`): each chunk, and so each partition of the tables, lies in one task.

    A candle goes to its own month's chunk and, as a copy, to every later chunk whose warm-up
    reaches it (a broadcast join on the series with the chunks' spans: no shuffle before the
    one that places them)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    spark = candles.sparkSession
    spans = spark.createDataFrame(
        [(c.pair, c.window_ms, c.month, c.warmup_from_ms, c.first_ms, c.stop_ms) for c in chunks],
        StructType([StructField("pair", StringType()), StructField("window_ms", LongType()),
                    StructField(CHUNK_COLUMN, StringType()),
                    StructField("warmup_from_ms", LongType()),
                    StructField("first_ms", LongType()), StructField("stop_ms", LongType())]),
    ).alias("chunk")
    start = F.col("c.window_start_ms")
    placed = candles.alias("c").join(
        F.broadcast(spans),
        (F.col("c.pair") == F.col("chunk.pair"))
        & (F.col("c.window_ms") == F.col("chunk.window_ms"))
        & (start >= F.col("chunk.warmup_from_ms")) & (start < F.col("chunk.stop_ms")),
    )
    return placed.select(
        *[F.col(f"c.{name}") for name in CANDLE_ARROW_SCHEMA.names],
        F.col(f"chunk.{CHUNK_COLUMN}"),
        (start >= F.col("chunk.first_ms")).alias(IN_CHUNK_COLUMN),
    ).repartition(_task_count(spark), "pair", "window_ms", CHUNK_COLUMN)


def _task_count(spark: SparkSession) -> int:
    return max(int(spark.conf.get("spark.sql.shuffle.partitions") or 1),
               2 * spark.sparkContext.defaultParallelism)


def _per_task(
    history: HistoryByKey, start_ms: int, end_ms: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """One task: the chunks it holds (own candles and warm-up copies) -> their indicator rows,
    one chunk after the other; the table's history joins every chunk (used only where the
    input's candles before it are too few)."""
    spans = {month: (first, stop) for month, first, stop in month_spans(start_ms, end_ms)}
    keys = ["pair", "window_ms", CHUNK_COLUMN]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held = [batch for batch in batches if batch.num_rows]
        if not held:
            return
        rows = pa.Table.from_batches(held)
        rows = rows.take(pc.sort_indices(rows, [(k, "ascending") for k in keys]))
        firsts = _run_starts(rows, keys)
        for lo, hi in zip(firsts, [*firsts[1:], rows.num_rows], strict=True):
            chunk = rows.slice(lo, hi - lo)
            first, stop = spans[chunk[CHUNK_COLUMN][0].as_py()]
            key = (chunk["pair"][0].as_py(), int(chunk["window_ms"][0].as_py()))
            values = indicators_of_series(chunk.select(CANDLE_ARROW_SCHEMA.names),
                                          history.get(key), first, stop)
            month = pa.array([chunk[CHUNK_COLUMN][0].as_py()] * values.num_rows, pa.string())
            yield from values.append_column(CHUNK_COLUMN, month).to_batches()

    return run


def _run_starts(rows: pa.Table, keys: Sequence[str]) -> list[int]:
    """Where each run of equal `keys` starts in `rows` (sorted by them; not empty)."""
    n = rows.num_rows
    starts = np.zeros(n, dtype=bool)
    starts[0] = True
    for name in keys:
        column = rows[name]
        changed = pc.not_equal(column.slice(1), column.slice(0, n - 1))
        starts[1:] |= changed.to_numpy(zero_copy_only=False)
    return np.flatnonzero(starts).tolist()


def indicators_frame(
    chunked: DataFrame, history: HistoryByKey, start_ms: int, end_ms: int
) -> DataFrame:
    """Indicator rows of the range for every pair and duration, as a Spark DataFrame:
    `INDICATOR_ARROW_SCHEMA` and `month` (the table partition of the row).

    `chunked` is :func:`chunked_candles`' frame (persist it: the candles write reads it too).
    Each task computes the chunks it holds (`mapInArrow`: no shuffle, no sort in Spark), so its
    output holds whole partitions of the table and the write needs no shuffle either. Each
    chunk's values equal the whole series' (its warm-up copies are the `MAX_WARMUP - 1`
    candles before it, as a range gets from before its start)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return chunked.mapInArrow(_per_task(history, start_ms, end_ms),
                              from_arrow_schema(INDICATOR_ARROW_SCHEMA.append(
                                  pa.field(CHUNK_COLUMN, pa.string()))))


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
