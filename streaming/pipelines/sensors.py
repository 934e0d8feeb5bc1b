"""The sensors speed layer: SX, SY, SZ -> window features FA, FI, FD -> join -> predictions.

`window_processor`, `join_processor` and `archive_processor` build the long-running processors
(each one consumer group; run several instances to share the partitions).
`run_sensors_through_stream` produces a table of events (row order = arrival order), runs the
window and join processors until idle on a real broker and reads the results back: the streaming
half of the Lambda test, the end-to-end test and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.sensors.binning import DEFAULT_EDGES, BinEdges
from features.sensors.model import DEFAULT_MODEL, AlertModel
from features.sensors.schemas import (
    FEATURE_ARROW_SCHEMA,
    FEATURE_TABLE_SCHEMA,
    FEATURE_WIRE_SCHEMA,
    FEATURES,
    READING_WIRE_SCHEMA,
    SENSOR_SCHEMA_VERSION,
    SENSORS,
)
from features.sensors.window_math import (
    DEFAULT_GRACE_MS,
    DEFAULT_MAX_LATENESS_MS,
    sensor_window,
)
from streaming.partitioning import partition_for
from streaming.processors.sensor_join import (
    SensorJoinConfig,
    SensorJoinGroup,
    SensorJoinOperator,
)
from streaming.processors.sensor_windows import (
    SensorWindowConfig,
    SensorWindowGroup,
    SensorWindowOperator,
)
from streaming.runtime.clients import make_producer
from streaming.runtime.deliveries import Deliveries
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sinks.gcs_parquet_archive import ArchiveConfig, ArchiveOperator
from streaming.sinks.object_store import open_store
from streaming.topics import CHECKPOINTS, DEAD_LETTER, SENSOR_PREDICTIONS, TopicSpec, ensure_topics

PREDICTION_SCHEMA = pa.schema([
    pa.field("client", pa.string(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("trigger", pa.string(), nullable=False),
    pa.field("vector", pa.list_(pa.int64()), nullable=False),
    pa.field("probability", pa.float64(), nullable=False),
    pa.field("alert", pa.bool_(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("edges_version", pa.string(), nullable=False),
])


@dataclass(frozen=True)
class SensorTopics:
    """Topic names of one sensors pipeline (a prefix isolates test runs on a shared broker)."""

    SX: str = "SX"
    SY: str = "SY"
    SZ: str = "SZ"
    FA: str = "FA"
    FI: str = "FI"
    FD: str = "FD"
    predictions: str = SENSOR_PREDICTIONS
    dead_letter: str = DEAD_LETTER
    checkpoints: str = CHECKPOINTS

    @classmethod
    def prefixed(cls, prefix: str) -> SensorTopics:
        base = cls()
        return cls(*(prefix + getattr(base, f) for f in cls.__dataclass_fields__))

    def of(self, name: str) -> str:
        """The topic of a sensor or feature name (SX ... FD)."""
        return str(getattr(self, name))

    def specs(self, partitions: int) -> list[TopicSpec]:
        """Inputs, features and predictions co-partitioned with `partitions` partitions."""
        data = [self.of(n) for n in (*SENSORS, *FEATURES)] + [self.predictions]
        return [
            *(TopicSpec(name, partitions) for name in data),
            TopicSpec(self.dead_letter, 1),
            TopicSpec(self.checkpoints, 1, cleanup_policy="compact", retention_ms=-1),
        ]


def window_processor(
    kafka: KafkaSettings,
    *,
    grace_ms: int = DEFAULT_GRACE_MS,
    edges: BinEdges = DEFAULT_EDGES,
    topics: SensorTopics = SensorTopics(),
    group: str = "braid-sensor-windows",
    batch_size: int = 10_000,
    poll_timeout_s: float = 0.1,
    consumer_overrides: dict[str, str | int | bool] | None = None,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS,
) -> StreamProcessor:
    config = SensorWindowConfig(sensor_window(grace_ms, max_lateness_ms), edges,
                                {name: topics.of(name) for name in FEATURES},
                                max_event_time_skew_ms)
    shared = SensorWindowGroup(config)  # the partitions' operators share it (vectorized)
    return StreamProcessor(
        kafka,
        ProcessorConfig(group, (topics.SZ,), batch_size=batch_size, poll_timeout_s=poll_timeout_s,
                        dead_letter_topic=topics.dead_letter, checkpoint_topic=topics.checkpoints,
                        consumer_overrides=consumer_overrides or {}),
        lambda partition: SensorWindowOperator(config, partition, shared),
    )


def join_processor(
    kafka: KafkaSettings,
    *,
    model: AlertModel = DEFAULT_MODEL,
    threshold: float = 0.5,
    grace_ms: int = DEFAULT_GRACE_MS,
    topics: SensorTopics = SensorTopics(),
    group: str = "braid-sensor-join",
    batch_size: int = 10_000,
    poll_timeout_s: float = 0.1,
    consumer_overrides: dict[str, str | int | bool] | None = None,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS,
) -> StreamProcessor:
    inputs = {topics.of(name): name for name in ("SX", "SY", *FEATURES)}
    config = SensorJoinConfig(inputs, topics.predictions, model, threshold, grace_ms,
                              max_event_time_skew_ms, max_lateness_ms)
    shared = SensorJoinGroup(config)  # the partitions' operators share it (vectorized)
    return StreamProcessor(
        kafka,
        ProcessorConfig(group, tuple(inputs), batch_size=batch_size,
                        poll_timeout_s=poll_timeout_s, dead_letter_topic=topics.dead_letter,
                        checkpoint_topic=topics.checkpoints,
                        consumer_overrides=consumer_overrides or {}),
        lambda partition: SensorJoinOperator(config, partition, shared),
    )


def reading_message(client: str, timestamp_ms: int, value: float, sensor: str) -> bytes:
    """The wire JSON of a reading (categorical sensors as ints)."""
    wire: float | int = int(value) if sensor in ("SX", "SY") else float(value)
    return orjson.dumps({"v": SENSOR_SCHEMA_VERSION, "client": client,
                         "timestamp_ms": int(timestamp_ms), "value": wire})


def produce_events(kafka: KafkaSettings, topics: SensorTopics, events: pa.Table,
                   partitions: int) -> int:
    """Produce simulator/replay events (columns sensor, client, timestamp_ms, value) in row
    order, keyed by client, partition chosen by `partition_for`; returns the count. Raises if
    the broker did not acknowledge every one (a failed delivery is not silently lost)."""
    producer = make_producer(kafka)
    names = {s: topics.of(s) for s in SENSORS}
    columns = [events[c].to_pylist() for c in ("sensor", "client", "timestamp_ms", "value")]
    deliveries = Deliveries()
    for sensor, client, ts, value in zip(*columns, strict=True):
        message = reading_message(client, ts, value, sensor)
        while True:
            try:
                producer.produce(names[sensor], key=client, value=message,
                                 partition=partition_for(client, partitions),
                                 on_delivery=deliveries.track())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60) or deliveries.error is not None:
        raise RuntimeError(f"sensor events were not all delivered: {deliveries.error}")
    return events.num_rows


def read_readings(kafka: KafkaSettings, topics: SensorTopics) -> pa.Table:
    """Every SX, SY and SZ reading the topics hold, each topic in partition/offset order (the
    order the stream judged lateness in; columns sensor, client, timestamp_ms, value, incident
    (False: the log carries no labels)): what a training set built from the log, rather than
    from what a producer meant to publish, is built from. For topics of valid readings only
    (a demo's, a test's): anything else raises, naming where it lies."""
    columns: dict[str, list[Any]] = {"sensor": [], "client": [], "timestamp_ms": [],
                                     "value": []}
    for sensor in SENSORS:
        for partition, offset, _, value in read_topic(kafka, topics.of(sensor)):
            reading = orjson.loads(value) if value is not None else None
            if not isinstance(reading, dict) or not {"client", "timestamp_ms",
                                                     "value"} <= reading.keys():
                raise ValueError(f"{topics.of(sensor)}[{partition}] offset {offset} holds no "
                                 f"reading: {value!r}")
            columns["sensor"].append(sensor)
            for name in ("client", "timestamp_ms", "value"):
                columns[name].append(reading[name])
    return pa.table({"sensor": pa.array(columns["sensor"], pa.string()),
                     "client": pa.array(columns["client"], pa.string()),
                     "timestamp_ms": pa.array(columns["timestamp_ms"], pa.int64()),
                     "value": pa.array(columns["value"], pa.float64()),
                     "incident": pa.array([False] * len(columns["sensor"]), pa.bool_())})


def read_feature_rows(kafka: KafkaSettings, topics: SensorTopics) -> pa.Table:
    """Every feature row of FA, FI, FD, one per (client, feature, timestamp_ms): the last
    written (a replay rewrites the same values)."""
    latest: dict[tuple[str, str, int], dict[str, object]] = {}
    for name in FEATURES:
        for _, _, _, value in read_topic(kafka, topics.of(name)):
            if value is not None:
                row = orjson.loads(value)
                row.pop("v")
                latest[(row["client"], row["feature"], row["timestamp_ms"])] = row
    rows = [latest[k] for k in sorted(latest)]
    return pa.Table.from_pylist(rows, schema=FEATURE_ARROW_SCHEMA)


def wide_features(rows: pa.Table) -> pa.Table:
    """Feature rows (one per feature) -> one row per SZ reading (:data:`FEATURE_TABLE_SCHEMA`),
    sorted by (client, timestamp_ms)."""
    by_key: dict[tuple[str, int], dict[str, object]] = {}
    for row in rows.to_pylist():
        wide = by_key.setdefault((row["client"], row["timestamp_ms"]), {
            "client": row["client"], "timestamp_ms": row["timestamp_ms"],
            "window_ms": row["window_ms"], "count": row["count"],
            "edges_version": row["edges_version"]})
        wide[row["feature"]] = row["value"]
        wide[f"{row['feature']}_bin"] = row["bin"]
    return pa.Table.from_pylist([by_key[k] for k in sorted(by_key)], schema=FEATURE_TABLE_SCHEMA)


def read_predictions(kafka: KafkaSettings, topic: str) -> pa.Table:
    """Every prediction in partition/offset order (corrections, and duplicates after a replay,
    included)."""
    rows = []
    for _, _, _, value in read_topic(kafka, topic):
        if value is not None:
            row = orjson.loads(value)
            row.pop("v")
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)


def final_predictions(predictions: pa.Table) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Per event (client, timestamp_ms, trigger), its last prediction in topic order: the
    final one (a correction comes later on the same partition as what it corrects)."""
    return {(r["client"], r["timestamp_ms"], r["trigger"]): r for r in predictions.to_pylist()}


@dataclass
class StreamResult:
    features: pa.Table  # FEATURE_TABLE_SCHEMA, one row per SZ reading (its last values)
    predictions: pa.Table  # PREDICTION_SCHEMA, every message (corrections included)
    topics: SensorTopics

    def final_predictions(self) -> dict[tuple[str, int, str], dict[str, Any]]:
        return final_predictions(self.predictions)


def run_sensors_through_stream(
    events: pa.Table,
    kafka: KafkaSettings,
    *,
    topic_prefix: str,
    grace_ms: int = DEFAULT_GRACE_MS,
    partitions: int = 4,
    edges: BinEdges = DEFAULT_EDGES,
    model: AlertModel = DEFAULT_MODEL,
    threshold: float = 0.5,
    max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS,
) -> StreamResult:
    """Produce `events` (row order = arrival order), run the window then the join processor
    (both with `grace_ms` and `max_lateness_ms`) until idle, and return what they wrote."""
    topics = SensorTopics.prefixed(topic_prefix)
    ensure_topics(kafka, topics.specs(partitions), TopicSettings())
    produce_events(kafka, topics, events, partitions)
    window_processor(kafka, grace_ms=grace_ms, edges=edges, topics=topics,
                     group=f"{topic_prefix}windows", max_lateness_ms=max_lateness_ms,
                     ).run(max_idle_s=3, install_signals=False)
    join_processor(kafka, model=model, threshold=threshold, grace_ms=grace_ms, topics=topics,
                   group=f"{topic_prefix}join", max_lateness_ms=max_lateness_ms,
                   ).run(max_idle_s=3, install_signals=False)
    return StreamResult(wide_features(read_feature_rows(kafka, topics)),
                        read_predictions(kafka, topics.predictions), topics)


def archive_processor(
    kafka: KafkaSettings,
    root: str,
    *,
    topics: SensorTopics = SensorTopics(),
    max_rows: int = 50_000,
    max_age_s: float = 30.0,
    group: str = "braid-sensor-archive",
    batch_size: int = 10_000,
) -> StreamProcessor:
    """Copies SX, SY, SZ, FA, FI, FD to Parquet under `root` (gs://bucket/prefix or a folder)."""
    schemas = {topics.of(s): READING_WIRE_SCHEMA for s in SENSORS}
    schemas |= {topics.of(f): FEATURE_WIRE_SCHEMA for f in FEATURES}
    config = ArchiveConfig(schemas, max_rows=max_rows, max_age_s=max_age_s)
    store = open_store(root)
    return StreamProcessor(
        kafka,
        ProcessorConfig(group, tuple(schemas), batch_size=batch_size,
                        dead_letter_topic=topics.dead_letter, checkpoint_topic=topics.checkpoints),
        lambda partition: ArchiveOperator(config, store, partition),
    )
