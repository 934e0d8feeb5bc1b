"""Warm-up history of a backfill range from the `candles` table: a count of candles, not a span.

A backfill of `[start, end)` needs, for every pair and duration, the `MAX_WARMUP - 1` candles
before `start` (the stream keeps as many). How far back they lie depends on the pair: a liquid
pair's last 661 one-minute candles are the last 11 hours, a thin one's may be weeks back (USDT/USD
trades about 137 minutes a day; EOS/USD has gaps of 16-58 hours). So the lookup counts rows:
from the table's log (each file's partition values, row count and window-start bounds) it
picks, per pair and duration, the latest month partitions that together hold at least that many
candles before `start` (a file reaching past `start` counts none of its rows, as their number
before `start` is unknown, but its month is read), reads only those partitions, and keeps the
last `MAX_WARMUP - 1` candles before `start` of each series.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from batch import delta_log
from batch.indicators_job import tail_per_series
from features.indicators import MAX_WARMUP

SeriesKey = tuple[str, int]
"""(pair, window_ms)."""


def rows_before_per_month(uri: str, start_ms: int) -> dict[SeriesKey, dict[str, int | None]]:
    """Per (pair, window_ms) and `month` partition holding rows before `start_ms`: how many
    rows it surely holds before it, from its log's add actions (a file wholly before counts its
    rows, one reaching past `start_ms` none). None where a file carries no row count or bounds.
    """
    actions = pa.table(delta_log.open_table(uri).get_add_actions(flatten=True))
    names = set(actions.column_names)
    n = actions.num_rows

    def column(name: str) -> list[object]:
        return actions[name].to_pylist() if name in names else [None] * n

    records, lows, highs = (column("num_records"), column("min.window_start_ms"),
                            column("max.window_start_ms"))
    counts: dict[SeriesKey, dict[str, int | None]] = defaultdict(dict)
    for i, (pair, size, month) in enumerate(zip(column("partition.pair"),
                                                column("partition.window_ms"),
                                                column("partition.month"), strict=True)):
        low, high, rows = lows[i], highs[i], records[i]
        if low is not None and int(low) >= start_ms:  # type: ignore[call-overload]
            continue  # wholly at or after the start
        key, part = (str(pair), int(size)), str(month)  # type: ignore[call-overload]
        if rows is None or high is None:
            before: int | None = None
        else:
            before = int(rows) if int(high) < start_ms else 0  # type: ignore[call-overload]
        known = counts[key].get(part, 0)
        counts[key][part] = None if before is None or known is None else known + before
    return counts


def months_holding(counts: Mapping[str, int | None], rows: int) -> list[str]:
    """The latest months of `counts` (months holding rows before the start, each with how many
    it surely holds) that together hold at least `rows` rows (all of them when they hold fewer,
    or when a count is unknown)."""
    months = sorted(counts, reverse=True)
    chosen: list[str] = []
    total = 0
    for month in months:
        chosen.append(month)
        count = counts[month]
        if count is None:
            return months
        total += count
        if total >= rows:
            break
    return chosen


def history_before(
    uri: str,
    pairs: Sequence[str],
    durations_ms: Sequence[int],
    start: date,
    start_ms: int,
    keep: int = MAX_WARMUP - 1,
) -> dict[SeriesKey, pa.Table]:
    """The last `keep` candles before `start` (`start_ms`) of each pair and duration in the
    table."""
    if not delta_log.table_exists(uri):
        return {}
    counts = rows_before_per_month(uri, start_ms)
    pieces: list[pa.Table] = []
    for pair in pairs:
        for size in durations_ms:
            months = months_holding(counts.get((pair, size), {}), keep)
            if not months:
                continue
            pieces.append(delta_log.read_table(uri, filters=[
                ("pair", "=", pair),
                ("window_ms", "=", str(size)),
                ("month", "in", months),
            ]))
    if not pieces:
        return {}
    history = pa.concat_tables(pieces, promote_options="default")
    history = history.filter(pc.less(history["window_start_ms"], start_ms))
    return tail_per_series(history, keep)
