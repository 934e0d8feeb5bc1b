"""Event-time spans of Parquet input files from their footers, before any file is read.

The per-file function (`batch.file_results`) ships the trades of a window to a shared
aggregation whenever another input file may hold trades of the same pair in that window. Without
knowing the other files it must assume the windows of each pair's first and last trade are
shared (the optimistic pass): for daily files and daily candles that is a whole day of every
pair's trades per file end, about 40 % of a year's trades shuffled for nothing. A Parquet
file's footer already holds the `timestamp_ms` minimum and maximum of every row group, so the
driver knows each file's event-time span, over all its rows, before a task starts.

That span is a superset of every pair's span of valid trades in the file (a valid trade is a
row with a non-null timestamp; the statistics cover every non-null value). A window overlapping
no other file's superset span holds no other file's trade, so the exact pass
(`FileContext.other_spans`) computed from these spans gives the same candles as from the
reported spans: a window wrongly believed shared is only aggregated after the shuffle instead of
in its file, from the same trades. Only the sharing part of a context can come from supersets:
the stream time before a file (`FILE` arrival order) needs the largest *valid* event time of the
pair in earlier files, so :func:`footer_contexts` serves `EVENT_TIME` order only (where nothing
is late), and any file without usable statistics (not Parquet, compressed, no statistics, a
`timestamp_ms` column that is not a plain int64, unreadable) gives None: the caller then runs
the passes as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import structlog

from batch.file_results import FileContext
from batch.object_storage import filesystem_for, is_gcs
from features.windows import NO_STREAM_TIME

log = structlog.get_logger(__name__)

TIMESTAMP_COLUMN = "timestamp_ms"


def footer_span(path: str) -> tuple[int, int] | bool | None:
    """(min, max) of the file's `timestamp_ms` from its footer; True for a file with no
    non-null timestamp (it holds no trade); None when the footer cannot tell."""
    if not path.lower().endswith((".parquet", ".pq")):
        return None
    try:
        fs = filesystem_for(path)
        with fs.open(path[len("gs://"):] if is_gcs(path) else path, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata
            schema = metadata.schema.to_arrow_schema()
    except Exception as error:  # an unreadable file: the per-file task rejects it as before
        log.info("no footer span", path=path, error=f"{type(error).__name__}: {error}")
        return None
    if schema.get_field_index(TIMESTAMP_COLUMN) < 0 or not pa.types.is_int64(
            schema.field(TIMESTAMP_COLUMN).type):
        return None
    column = next((i for i in range(metadata.num_columns)
                   if metadata.schema.column(i).path == TIMESTAMP_COLUMN), None)
    if column is None:
        return None
    low: int | None = None
    high: int | None = None
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(column)
        if metadata.row_group(group).num_rows == 0:
            continue
        stats = chunk.statistics
        if stats is None or stats.null_count is None:
            return None
        if stats.null_count == metadata.row_group(group).num_rows:
            continue  # only nulls: no trade here
        if not stats.has_min_max:
            return None
        low = int(stats.min) if low is None else min(low, int(stats.min))
        high = int(stats.max) if high is None else max(high, int(stats.max))
    if low is None or high is None:
        return True
    return low, high


def footer_contexts(
    paths: Sequence[str], pairs: Sequence[str], durations_ms: Sequence[int]
) -> dict[tuple[int, str], FileContext] | None:
    """Every file's context for every pair (`EVENT_TIME` order: no stream time before a file),
    its `other_spans` the footer spans of the other files that come within the longest duration
    of its own (no farther file can share a window with it); None unless every file's footer
    tells its span."""
    spans: dict[int, tuple[int, int]] = {}
    for index, path in enumerate(paths):
        span = footer_span(path)
        if span is None:
            return None
        if span is not True:
            assert isinstance(span, tuple)
            spans[index] = span
    reach = max(durations_ms)
    out: dict[tuple[int, str], FileContext] = {}
    for index, (low, high) in spans.items():
        # a window of a trade in [low, high] starts after low - reach and ends by high + reach
        others = tuple(sorted(
            (o_low, o_high) for other, (o_low, o_high) in spans.items()
            if other != index and o_high > low - reach and o_low < high + reach
        ))
        for pair in pairs:
            out[(index, pair)] = FileContext(NO_STREAM_TIME, others)
    return out
