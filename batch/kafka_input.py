"""A Kafka topic as the backfill's input: Spark's Kafka source, read as a batch.

The `trades` topic holds one JSON trade per record (the wire format of
`streaming.processors.trade_decoding`), keyed by pair. The job reads a range of it
(`startingOffsets`/`endingOffsets` or `startingTimestamp`/`endingTimestamp`) once, keeps the
records (persisted: a second pass sees the same ones), and hands each Kafka partition, in offset
order, to the same per-file function the files go through, as JSON lines of the topic's records
(`batch.trade_files`): each record's value with its Kafka timestamp merged in as
`kafka_timestamp_ms`, so the stream's event-time skew rule rejects the same trades, and its
key as `kafka_key`, so an otherwise valid trade keyed other than its pair is refused with the
stream's `key:` reason (`features.entity_keys`: it is not on its pair's partition). A partition
is one "file" in `file` arrival order, so lateness is decided in the order the stream saw the
records.

Rejected rows keep where they came from: `source` is `kafka:<topic>/<partition>`, `row_number`
is the record's offset, and `raw` is its JSON line (with `kafka_timestamp_ms`). Window closure
records (`features.schemas.window_closure`: the stream's idle closures, a finished source's end
of input) come through in their place among the trades, located the same way, and close the
same windows as in the stream (`batch.file_results`).

A topic that does not exist, or a range holding no record, stops the job with
:class:`KafkaInputError` before anything is written: an empty read must never replace good
partitions with nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch.spark_session import require_kafka_source
from batch.trade_files import parse_trade_file
from features.entity_keys import foreign_key_reasons
from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS

NOT_AN_OBJECT = "unparseable: the record's value is not a JSON object"


class KafkaInputError(ValueError):
    """The Kafka input cannot be read as asked (no such topic, an empty range)."""


@dataclass(frozen=True)
class KafkaPosition:
    """A start or end of the range: `earliest`/`latest`, an offset (every partition, or per
    partition), or a time (epoch ms, the records' Kafka timestamps)."""

    kind: str  # "earliest" | "latest" | "offsets" | "timestamp"
    offsets: dict[int, int] = field(default_factory=dict)  # kind offsets; -1: every partition
    timestamp_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> KafkaPosition:
        """`earliest`, `latest`, an offset (`1200`: every partition), a JSON object of
        partition -> offset (`{"0": 10, "1": 12}`), or a time: an ISO-8601 date or datetime
        (UTC unless it says otherwise) or `ms:<epoch milliseconds>`."""
        value = text.strip()
        if value in ("earliest", "latest"):
            return cls(value)
        if value.startswith("{"):
            raw = json.loads(value)
            return cls("offsets", {int(k): int(v) for k, v in raw.items()})
        if re.fullmatch(r"-?\d+", value):
            return cls("offsets", {-1: int(value)})
        if value.startswith("ms:"):
            return cls("timestamp", timestamp_ms=int(value[3:]))
        try:
            when = (datetime.fromisoformat(value) if "T" in value or " " in value
                    else datetime.combine(date.fromisoformat(value), datetime.min.time()))
        except ValueError:
            raise ValueError(
                f"Kafka position {text!r}: use earliest, latest, an offset, a JSON object of "
                "partition -> offset, an ISO-8601 date/datetime, or ms:<epoch ms>"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return cls("timestamp", timestamp_ms=int(when.timestamp() * 1000))

    def spark_options(self, topic: str, partitions: list[int], *, start: bool) -> dict[str, str]:
        """The Kafka source's options for this position as the range's start or end."""
        prefix = "starting" if start else "ending"
        if self.kind in ("earliest", "latest"):
            if start and self.kind == "latest":
                raise KafkaInputError("a batch read of a Kafka range cannot start at `latest` "
                                      "(the range would be empty): give an offset or a time")
            if not start and self.kind == "earliest":
                raise KafkaInputError("a Kafka range cannot end at `earliest` (it would be "
                                      "empty): give an offset or a time")
            return {f"{prefix}Offsets": self.kind}
        if self.kind == "timestamp":
            return {f"{prefix}Timestamp": str(self.timestamp_ms)}
        every = self.offsets.get(-1)
        per_partition = ({p: every for p in partitions} if every is not None
                         else dict(self.offsets))
        return {f"{prefix}Offsets": json.dumps({topic: {str(p): o for p, o in
                                                        sorted(per_partition.items())}})}


@dataclass(frozen=True)
class KafkaInput:
    """What to read: servers, topic, range, and extra client settings (`kafka.` options,
    e.g. `security.protocol`)."""

    bootstrap_servers: str
    topic: str
    start: KafkaPosition = field(default_factory=lambda: KafkaPosition("earliest"))
    end: KafkaPosition = field(default_factory=lambda: KafkaPosition("latest"))
    client_options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"kafka://{self.bootstrap_servers}/{self.topic}"


RECORD_COLUMNS = ["partition", "offset", "key", "kafka_timestamp_ms", "value"]


@dataclass
class KafkaRecords:
    """The range's records, read once and persisted; one "file" per Kafka partition."""

    source: KafkaInput
    records: DataFrame  # RECORD_COLUMNS, persisted
    partitions: list[int]  # partitions holding records, ascending: source_index order
    count: int

    @property
    def paths(self) -> list[str]:
        return [f"kafka:{self.source.topic}/{p}" for p in self.partitions]

    def map_files(
        self, spark: SparkSession, function: Callable[[bytes, str, int], pa.Table],
        schema: pa.Schema,
    ) -> DataFrame:
        """`function` applied to each partition's records (JSON lines, offset order), one
        task per partition; `function` must parse with :func:`parse_kafka_lines`."""
        from pyspark.sql.pandas.types import from_arrow_schema

        topic = self.source.topic
        index_of = {p: i for i, p in enumerate(self.partitions)}

        def run(records: pa.Table) -> pa.Table:
            records = records.sort_by("offset")
            partition = int(records["partition"][0].as_py())
            return function(records_as_json_lines(records), f"kafka:{topic}/{partition}",
                            index_of[partition])

        return self.records.groupBy("partition").applyInArrow(run, from_arrow_schema(schema))

    def unpersist(self) -> None:
        self.records.unpersist()


def read_kafka(spark: SparkSession, source: KafkaInput) -> KafkaRecords:
    """Read the range (checked: the topic exists, the range is not empty) and persist it."""
    require_kafka_source(spark)
    partitions = topic_partitions(spark, source)
    reader = (spark.read.format("kafka")
              .option("kafka.bootstrap.servers", source.bootstrap_servers)
              .option("subscribe", source.topic)
              .option("failOnDataLoss", "true")
              # a start time after the last record gives an empty range (reported below),
              # not Spark's "no offset matched" failure
              .option("startingOffsetsByTimestampStrategy", "latest"))
    for key, value in source.client_options.items():
        reader = reader.option(f"kafka.{key}", value)
    for key, value in {**source.start.spark_options(source.topic, partitions, start=True),
                       **source.end.spark_options(source.topic, partitions, start=False)}.items():
        reader = reader.option(key, value)
    records = reader.load().select(
        F.col("partition").cast("int").alias("partition"),
        F.col("offset"),
        F.col("key"),
        F.floor(F.unix_micros(F.col("timestamp")) / 1000).cast("long").alias(
            "kafka_timestamp_ms"),
        F.col("value"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    present = records.groupBy("partition").count().collect()
    count = sum(int(r["count"]) for r in present)
    if count == 0:
        records.unpersist()
        raise KafkaInputError(
            f"{source.describe()}: no record in the range {_range_text(source)}; nothing was "
            "written (an empty read must not replace the range's partitions)"
        )
    return KafkaRecords(source, records, sorted(int(r["partition"]) for r in present), count)


def topic_partitions(spark: SparkSession, source: KafkaInput) -> list[int]:
    """The topic's partitions, asked of the cluster with the Kafka admin client the Kafka source
    ships; :class:`KafkaInputError` when the topic does not exist."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    props = jvm.java.util.Properties()
    props.setProperty("bootstrap.servers", source.bootstrap_servers)
    props.setProperty("request.timeout.ms", "15000")
    props.setProperty("default.api.timeout.ms", "30000")
    for key, value in source.client_options.items():
        props.setProperty(key, value)
    admin = jvm.org.apache.kafka.clients.admin.Admin.create(props)
    try:
        names = admin.listTopics().names().get()
        if not names.contains(source.topic):
            raise KafkaInputError(
                f"{source.describe()}: the topic does not exist (topics there: "
                f"{sorted(str(n) for n in names.toArray() if not str(n).startswith('__'))})"
            )
        topics = jvm.java.util.Collections.singletonList(source.topic)
        described = admin.describeTopics(topics).allTopicNames().get().get(source.topic)
        return sorted(int(p.partition()) for p in described.partitions().toArray())
    finally:
        admin.close()


OFFSET_FIELD = "kafka_offset"
NOT_AN_OBJECT_FIELD = "kafka_value_not_an_object"
_TAIL = re.compile(rb'"kafka_offset":(-?\d+),"kafka_timestamp_ms":(-?\d+)}$')
_KEY = re.compile(rb'"kafka_key":(null|"(?:[^"\\]|\\.)*"),"kafka_offset":-?\d+,'
                  rb'"kafka_timestamp_ms":-?\d+}$')


_NO_KEY_COLUMN = object()


def records_as_json_lines(records: pa.Table) -> bytes:
    """Records (offset order) as JSON lines of the topic's archive: each value with its
    `kafka_offset` and `kafka_timestamp_ms` merged in (the parser ignores the offset). A value
    that is not a JSON object becomes a line that is rejected, never a blank or split line."""
    values = records["value"].to_pylist()
    offsets = records["offset"].to_pylist()
    stamps = records["kafka_timestamp_ms"].to_pylist()
    keys = (records["key"].to_pylist() if "key" in records.column_names
            else [_NO_KEY_COLUMN] * len(values))
    lines: list[bytes] = []
    for value, key, offset, stamp in zip(values, keys, offsets, stamps, strict=True):
        tail = b'"kafka_offset":%d,"kafka_timestamp_ms":%d}' % (offset, stamp)
        if key is not _NO_KEY_COLUMN:
            held = b"null" if key is None else json.dumps(key.decode("utf-8", "replace")).encode()
            tail = b'"kafka_key":' + held + b"," + tail
        # newlines in valid JSON are whitespace outside strings: spaces keep the meaning
        body = (value or b"").replace(b"\r", b" ").replace(b"\n", b" ").strip()
        if body[:1] == b"{" and body[-1:] == b"}":
            inner = body[1:-1].strip()
            lines.append(b"{" + inner + (b"," if inner else b"") + tail)
        else:
            text = json.dumps(body.decode("utf-8", "replace")).encode()
            lines.append(b'{"' + NOT_AN_OBJECT_FIELD.encode() + b'":' + text + b"," + tail)
    return b"\n".join(lines) + b"\n"


def parse_kafka_lines(content: bytes, path: str, source_index: int, *,
                      max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS) -> pa.Table:
    """A partition's JSON lines (:func:`records_as_json_lines`) parsed as
    `batch.trade_files` parses JSON lines, with each rejected row pointing at its record:
    `source` = `path` (`kafka:<topic>/<partition>`), `row_number` = offset, `raw` = its line."""
    parsed = parse_trade_file(content, f"{path}.jsonl", source_index,
                              max_event_time_skew_ms=max_event_time_skew_ms)
    reasons = parsed["reject_reason"]
    closures = parsed["closure_rule"]
    keyed = b'"kafka_key":' in content
    if (not keyed and reasons.null_count == parsed.num_rows
            and closures.null_count == parsed.num_rows):
        return parsed
    lines = content.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    row_numbers = parsed["row_number"].to_pylist()
    closure_col = closures.to_pylist()
    # lines that are no trade row: rejected lines and closure records (both carry their line)
    not_rows = {n - 1 for n in row_numbers if n is not None}
    # parsed trade rows come in line order, skipping those lines
    readable = [i for i in range(len(lines)) if i not in not_rows]
    row_index = parsed["row_index"].to_pylist()
    source_col = parsed["source"].to_pylist()
    raw_col = parsed["raw"].to_pylist()
    reason_col = reasons.to_pylist()
    if keyed:  # the stream's rule: an otherwise valid trade keyed other than its pair is refused
        valid = [i for i, r in enumerate(reason_col) if r is None and closure_col[i] is None]
        keys = [_record_key(lines[readable[row_index[i]]]) for i in valid]
        pairs = parsed["pair"].take(pa.array(valid, pa.int64()))
        for i, reason in zip(valid, foreign_key_reasons(keys, pairs, "pair"), strict=True):
            reason_col[i] = reason
    for i, reason in enumerate(reason_col):
        if reason is None and closure_col[i] is None:
            continue
        number = row_numbers[i]
        line_no = number - 1 if number is not None else readable[row_index[i]]
        line = lines[line_no]
        found = _TAIL.search(line)
        source_col[i] = path
        row_numbers[i] = int(found.group(1)) if found else None
        raw_col[i] = line.decode("utf-8", "replace")
        if reason is not None and line.startswith(b'{"' + NOT_AN_OBJECT_FIELD.encode() + b'":'):
            reason_col[i] = NOT_AN_OBJECT
    out = parsed
    for name, values, kind in (("source", source_col, pa.string()),
                               ("row_number", row_numbers, pa.int64()),
                               ("raw", raw_col, pa.string()),
                               ("reject_reason", reason_col, pa.string())):
        index = out.schema.get_field_index(name)
        out = out.set_column(index, out.schema.field(name), pa.array(values, kind))
    return out


def _record_key(line: bytes) -> bytes | None:
    """The Kafka key a line of :func:`records_as_json_lines` carries (None: the record had
    none)."""
    found = _KEY.search(line)
    if found is None:
        raise ValueError(f"a Kafka line without its key: {line[-200:]!r}")
    held = json.loads(found.group(1))
    return None if held is None else str(held).encode("utf-8")


def _range_text(source: KafkaInput) -> str:
    def text(p: KafkaPosition) -> str:
        if p.kind == "timestamp":
            return datetime.fromtimestamp(p.timestamp_ms / 1000, UTC).isoformat()
        if p.kind == "offsets":
            return json.dumps(p.offsets)
        return p.kind

    return f"[{text(source.start)}, {text(source.end)})"
