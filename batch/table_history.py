"""Warm-up history of a backfill range from the `candles` table: a count of candles, not a span.

A backfill of `[start, end)` needs, for every pair and duration, the `MAX_WARMUP - 1` candles
before `start` (the stream keeps as many). How far back they lie depends on the pair: a liquid
pair's last 661 one-minute candles are the last 11 hours, a thin one's may be weeks back (USDT/USD
trades about 137 minutes a day; EOS/USD has gaps of 16-58 hours). So the lookup counts rows:
from the table's log (each file's partition values and row count) it picks, per pair and
duration, the latest days before `start` that together hold at least that many candles, reads
only those partitions, and keeps the last `MAX_WARMUP - 1` candles of each series.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from batch import delta_log
from batch.indicators_job import tail_per_series
from features.indicators import MAX_WARMUP

SeriesKey = tuple[str, int]
"""(pair, window_ms)."""


def rows_per_day(uri: str) -> dict[SeriesKey, dict[date, int | None]]:
    """Rows per (pair, window_ms) and day partition of the table, from its log's add actions.

    A count is None where a file carries no row-count statistic.
    """
    actions = pa.table(delta_log.open_table(uri).get_add_actions(flatten=True))
    names = set(actions.column_names)
    counts: dict[SeriesKey, dict[date, int | None]] = defaultdict(dict)
    records = actions["num_records"].to_pylist() if "num_records" in names else None
    pairs = actions["partition.pair"].to_pylist()
    sizes = actions["partition.window_ms"].to_pylist()
    days = actions["partition.day"].to_pylist()
    for i, (pair, size, day) in enumerate(zip(pairs, sizes, days, strict=True)):
        key = (str(pair), int(size))
        when = day if isinstance(day, date) else date.fromisoformat(str(day))
        rows = None if records is None or records[i] is None else int(records[i])
        before = counts[key].get(when, 0)
        counts[key][when] = None if rows is None or before is None else before + rows
    return counts


def days_holding(
    counts: dict[date, int | None], before: date, rows: int
) -> list[date]:
    """The latest days before `before` that together hold at least `rows` rows (all earlier
    days when they hold fewer; every earlier day when a count is unknown)."""
    earlier = sorted((d for d in counts if d < before), reverse=True)
    chosen: list[date] = []
    total = 0
    for day in earlier:
        chosen.append(day)
        count = counts[day]
        if count is None:
            return earlier
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
    """The last `keep` candles before `start` of each pair and duration in the table."""
    if not delta_log.table_exists(uri):
        return {}
    counts = rows_per_day(uri)
    pieces: list[pa.Table] = []
    for pair in pairs:
        for size in durations_ms:
            days = days_holding(counts.get((pair, size), {}), start, keep)
            if not days:
                continue
            pieces.append(delta_log.read_table(uri, filters=[
                ("pair", "=", pair),
                ("window_ms", "=", str(size)),
                ("day", "in", [d.isoformat() for d in days]),
            ]))
    if not pieces:
        return {}
    history = pa.concat_tables(pieces, promote_options="default")
    history = history.filter(pc.less(history["window_start_ms"], start_ms))
    return tail_per_series(history, keep)
