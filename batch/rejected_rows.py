"""Rejected input rows: what the backfill set aside and why (a Delta table, never a failure).

A row is rejected when it cannot be parsed or breaks the trade rules (`features.schemas.trade`):
unparseable, zero or negative price, NaN, and so on. The table holds the source file, the line
(when known), the row's text, the reason, and the backfill range it was found in. It is
partitioned by that range (`range_start`, `range_end`), so re-running a range replaces the
rows that range's run recorded. A run records rejected rows whose event time lies in its range,
and rows whose event time is unknown (unparseable).
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.file_results import REJECTED

REJECTED_ROWS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("row_number", pa.int64()),  # 1-based line in the file, when known
        pa.field("pair", pa.string()),
        pa.field("timestamp_ms", pa.int64()),  # null when unparseable
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("range_start", pa.date32()),
        pa.field("range_end", pa.date32()),
    ]
)
REJECTED_PARTITIONS = ["range_start", "range_end"]


def rejected_rows_frame(
    file_results: DataFrame, *, start_ms: int, end_ms: int, start: date, end: date, run_id: str
) -> DataFrame:
    """The range's rejected rows among the per-file results (`batch.file_results`)."""
    ts = F.col("timestamp_ms")  # null when the row's time is unknown
    in_range = ts.isNull() | ((ts >= F.lit(start_ms)) & (ts < F.lit(end_ms)))
    return file_results.where((F.col("kind") == REJECTED) & in_range).select(
        "source", "row_number", "pair", "timestamp_ms", "reason", "raw",
        F.lit(run_id).alias("run_id"),
        F.lit(start).cast("date").alias("range_start"),
        F.lit(end).cast("date").alias("range_end"),
    )
