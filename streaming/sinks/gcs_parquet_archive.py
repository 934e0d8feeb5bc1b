"""The Parquet archive: copies topics (sensor readings, features) to Parquet objects on GCS.

Layout (Hive-style, so Spark and pyarrow discover `topic` and `date`):
`<root>/topic=<topic>/date=<YYYY-MM-DD>/part-<partition:03d>-<first:020d>-<last:020d>.parquet`
where `date` is the UTC date of each message's event time (`timestamp_ms` in its JSON;
`date=invalid` when the message has none) and `[first, last]` is the offset range of the *flush*
that wrote it: one flush of one topic-partition writes one object per date it holds, all named
with the same range.

Each row keeps where it came from (`partition`, `offset`), the Kafka key, the raw message, its
Kafka timestamp (`kafka_timestamp_ms`: the ingestion time the stream checks event times against,
`features.event_time`; null where the broker gave none) and its decoded fields (null where
undecodable), so the batch layer can apply the stream's own validation and arrival order.

No loss, no duplicates across restarts (kill -9 included):
- objects are written atomically (temporary name, then copy; see `object_store`), and offsets are
  committed only after every object of a flush exists, so a crash loses nothing;
- a flush's names are a function of its offset range, so rewriting a range rewrites the same
  objects with the same bytes. After a restart a topic-partition resumes at its committed offset
  `a`; if objects of a flush starting at `a` already exist (the crash came between the uploads
  and the commit), the first flush is made to end exactly where that one ended, so it replaces
  those objects instead of writing an overlapping range (and so on for every flush archived
  after the commit, since offsets are committed on the runtime's checkpoint interval).
"""

from __future__ import annotations

import io
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

from features.event_time import NO_INGESTION_TIME
from streaming.runtime.json_batch import decode_json_batch
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.records import Emission, InputBatch
from streaming.sinks.object_store import ObjectStore

log = structlog.get_logger(__name__)

_NAME = re.compile(r"part-(\d{3,})-(\d{20})-(\d{20})\.parquet$")


@dataclass(frozen=True)
class ArchiveConfig:
    schemas: dict[str, pa.Schema]  # topic -> wire schema of its JSON messages
    max_rows: int = 50_000  # flush a topic-partition once it holds this many messages
    max_age_s: float = 30.0  # ... or once its oldest buffered message waited this long


def object_name(topic: str, date: str, partition: int, first: int, last: int) -> str:
    return f"topic={topic}/date={date}/part-{partition:03d}-{first:020d}-{last:020d}.parquet"


def flush_ranges(store: ObjectStore, topic: str, partition: int) -> dict[int, int]:
    """first offset -> last offset of every flush already archived for a topic-partition."""
    ranges: dict[int, int] = {}
    for name in store.list(f"topic={topic}/"):
        match = _NAME.search(name)
        if match and int(match.group(1)) == partition:
            first, last = int(match.group(2)), int(match.group(3))
            ranges[first] = max(last, ranges.get(first, last))
    return ranges


def _dates(timestamp_ms: pa.ChunkedArray) -> np.ndarray:
    ts = pc.fill_null(timestamp_ms, 0).to_numpy()
    days = np.where(ts > 0, ts, 0).astype("datetime64[ms]").astype("datetime64[D]")
    return np.where(ts > 0, days.astype(str), "invalid")


def _ingestion_times(batch: InputBatch) -> pa.Array:
    """The batch's Kafka timestamps as a column, null where unknown."""
    if batch.timestamps is None:
        return pa.nulls(len(batch), pa.int64())
    stamps = np.asarray(batch.timestamps, dtype=np.int64)
    return pa.array(stamps, pa.int64(), mask=stamps == NO_INGESTION_TIME)


@dataclass
class _Buffer:
    offsets: list[np.ndarray] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)
    since: float = 0.0
    rows: int = 0


class ArchiveOperator(PartitionOperator):
    """Buffers one partition number of every archived topic and flushes it to the store."""

    def __init__(self, config: ArchiveConfig, store: ObjectStore, partition: int) -> None:
        self.config = config
        self.store = store
        self.partition = partition
        self.buffers: dict[str, _Buffer] = defaultdict(_Buffer)
        self.flushed_until: dict[str, int] = {}  # next offset not yet archived
        # flushes already in the store at or after the resume point: first -> last offset
        self.existing: dict[str, dict[int, int]] = {}
        self.files_written = 0

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        topic = batch.topic
        if topic not in self.flushed_until:  # first batch since assignment: resume point
            first = int(batch.offsets[0])
            self.flushed_until[topic] = first
            self.existing[topic] = {a: b for a, b in flush_ranges(
                self.store, topic, self.partition).items() if a >= first}
            if self.existing[topic]:
                log.info("redoing flushes archived but not committed", topic=topic,
                         partition=self.partition, ranges=sorted(self.existing[topic].items()))
        buffer = self.buffers[topic]
        if not buffer.rows:
            buffer.since = time.monotonic()
        buffer.offsets.append(batch.offsets)
        buffer.tables.append(self._rows(batch))
        buffer.rows += len(batch)
        self._maybe_flush(topic, force=False)
        return Emission()

    def tick(self, now_ms: int) -> Emission:
        for topic in list(self.buffers):
            self._maybe_flush(topic, force=False)
        return Emission()

    def _rows(self, batch: InputBatch) -> pa.Table:
        decoded = decode_json_batch(batch, self.config.schemas[batch.topic]).table
        keys = [k.decode("utf-8", "replace") if k is not None else None for k in batch.keys]
        meta = pa.table({
            "partition": pa.array(np.full(len(batch), batch.partition, dtype=np.int32)),
            "offset": pa.array(batch.offsets, pa.int64()),
            "key": pa.array(keys, pa.string()),
            "message": pa.array(batch.values, pa.binary()),
            "kafka_timestamp_ms": _ingestion_times(batch),
        })
        for name in decoded.column_names:
            meta = meta.append_column(name, decoded[name])
        return meta

    def _maybe_flush(self, topic: str, *, force: bool) -> None:
        buffer = self.buffers[topic]
        if not buffer.rows:
            return
        offsets = np.concatenate(buffer.offsets)
        forced = self.existing[topic].get(int(offsets[0]))
        if forced is not None:
            if offsets[-1] < forced:
                return  # wait for the whole interrupted range
            cut = int(np.searchsorted(offsets, forced, side="right"))
        elif (force or buffer.rows >= self.config.max_rows
              or time.monotonic() - buffer.since >= self.config.max_age_s):
            cut = len(offsets)
        else:
            return
        table = pa.concat_tables(buffer.tables)
        self._write(topic, table.slice(0, cut), int(offsets[0]), int(offsets[cut - 1]))
        self.existing[topic].pop(int(offsets[0]), None)
        self.flushed_until[topic] = int(offsets[cut - 1]) + 1
        rest = table.slice(cut)
        buffer.tables, buffer.offsets = ([rest], [offsets[cut:]]) if rest.num_rows else ([], [])
        buffer.rows = rest.num_rows
        buffer.since = time.monotonic()
        if buffer.rows >= self.config.max_rows:
            self._maybe_flush(topic, force=False)

    def _write(self, topic: str, table: pa.Table, first: int, last: int) -> None:
        dates = _dates(table["timestamp_ms"])
        for date in sorted(set(dates.tolist())):
            part = table.filter(pa.array(dates == date))
            sink = io.BytesIO()
            pq.write_table(part, sink, compression="zstd")
            self.store.put_atomic(object_name(topic, date, self.partition, first, last),
                                  sink.getvalue())
            self.files_written += 1
        log.debug("archived", topic=topic, partition=self.partition, first=first, last=last,
                  rows=table.num_rows)

    def commit_offset(self, topic: str) -> int | None:
        return self.flushed_until.get(topic)

    def snapshot(self) -> Snapshot:
        return {"version": 1}  # the objects themselves are the archive's state

    def restore(self, snapshot: Snapshot) -> None:
        pass


def read_archive(store: ObjectStore, topic: str) -> pa.Table:
    """Every archived row of `topic` (all dates), sorted by (partition, offset)."""
    tables = []
    for name in store.list(f"topic={topic}/"):
        if _NAME.search(name):
            table = pq.read_table(io.BytesIO(store.get(name)))
            date = name.split("/")[1].removeprefix("date=")
            tables.append(table.append_column("date", pa.array([date] * table.num_rows)))
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables, promote_options="default")
    return table.sort_by([("partition", "ascending"), ("offset", "ascending")])
