"""The online-store sink: final candles, indicator rows and sensor features into Feast's online
store.

An operator on the streaming runtime (its own consumer group, `braid online-sink`): each batch
is decoded (`online_rows`: which topic feeds which feature view), keeps the newest row per
(view, entity), and goes to the store through one writer per view. Newest is the latest event
time; at an equal event time, for processor outputs (candles, indicators, sensor features), the
later log position, so a correction of the latest row (the window processor's, same reading
time, new values) reaches the store; for raw SX/SY readings the first row of an event time stays
(`online_rows.positioned`):

- Redis (`redis_online_writer.RedisBulkWriter`): Feast's own online format written in pipelined
  Lua `EVALSHA`s that compare event times inside Redis (Feast's `write_to_online_store` is 15x
  too slow for a year of candles);
- any other store (SQLite, Redis Cluster): Feast's `write_to_online_store`
  (`feast_online_writer.OnlineWriter`).

Both read the registry once and never let an older row overwrite a newer one.

**The write log.** With a `log_topic` (`online_writes`; `braid online-sink` sets it), every row
handed to the store and not refused is also produced there: `{"view", "entity", "event_ms",
"values"}`, keyed `view|entity|event_ms`. `braid consistency --history` compares each of them
with the batch layer's row at the same event time, so the report covers every key and time the
store was written, not only what it holds now. Log records are outputs of the runtime like any
other (produced before the offsets that led to them are committed); a replay after kill -9 logs
a row again with the same values.

Effectively once: writes are synchronous, so the safe offset is one past the batch's last
message; a replay after kill -9 drops rows as not newer (an earlier event time, or the same one
at a position already passed: on Redis each row's position is kept beside its event time), so
the store ends as an uninterrupted run leaves it (on Redis, without holding an older row
meanwhile). Rows that cannot be decoded, have no feature view, do not fit its types or fail
to write go to the dead-letter topic with the reason; the sink never stops on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import orjson
import structlog
from feast import FeatureStore
from feast.infra.online_stores.redis import RedisOnlineStoreConfig, RedisType

from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.runtime.records import DeadLetter, Emission, InputBatch, OutputRecord
from streaming.settings import KafkaSettings
from streaming.sinks.feast_online_writer import OnlineWriter
from streaming.sinks.online_rows import InvalidRow, OnlineRow, decode_row, positioned
from streaming.sinks.redis_online_writer import RedisBulkWriter

__all__ = ["InvalidRow", "OnlineRow", "OnlineSinkOperator", "OnlineWriter", "RedisBulkWriter",
           "decode_row", "online_sink_processor", "online_writer", "write_log_record"]

log = structlog.get_logger(__name__)


def online_writer(store: FeatureStore) -> OnlineWriter:
    """The bulk Redis writer for a plain or Sentinel Redis store, else Feast's own path."""
    online = store.config.online_store
    if isinstance(online, RedisOnlineStoreConfig) and online.redis_type != RedisType.redis_cluster:
        return RedisBulkWriter(store)
    return OnlineWriter(store)


class OnlineSinkOperator(PartitionOperator):
    """One partition of the sink: decode, route, keep the newest per entity, write, commit."""

    def __init__(self, writer: OnlineWriter, kinds: Mapping[str, str],
                 log_topic: str | None = None) -> None:
        self.writer = writer
        self.kinds = kinds  # input topic -> kind
        self.log_topic = log_topic  # the write log (module docstring); None: no log
        self.next_offset: dict[str, int] = {}

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        emission = Emission()
        kind = self.kinds[batch.topic]
        with_position = positioned(kind)
        newest: dict[tuple[str, str], tuple[OnlineRow, int]] = {}

        def dead(reason: str, offset: int, key: bytes | None, raw: bytes | None) -> None:
            emission.dead_letters.append(DeadLetter(
                reason[:500], batch.topic, batch.partition, offset, key, raw))

        for i, raw in enumerate(batch.values):
            offset = int(batch.offsets[i])
            try:
                row = decode_row(kind, raw)
            except InvalidRow as error:
                dead(str(error), offset, batch.keys[i], raw)
                continue
            if row.view not in self.writer.views:
                dead(f"online-sink: no feature view {row.view}", offset, batch.keys[i], raw)
                continue
            if with_position:
                row = dataclasses.replace(row, position=offset)
            current = newest.get((row.view, row.entity))
            if current is None or row.supersedes(current[0].event_ms, current[0].position):
                newest[(row.view, row.entity)] = (row, i)
        by_view: dict[str, list[tuple[OnlineRow, int]]] = {}
        for (view, _), entry in newest.items():
            by_view.setdefault(view, []).append(entry)
        for view, entries in by_view.items():
            try:
                rejected = self.writer.write(view, [row for row, _ in entries])
            except Exception as error:  # the store refused the batch: each row is reported
                log.warning("online write failed", view=view, error=str(error))
                for _, i in entries:
                    dead(f"online-sink: write failed: {error}", int(batch.offsets[i]),
                         batch.keys[i], batch.values[i])
                continue
            index = {id(row): i for row, i in entries}
            for row, reason in rejected:
                i = index[id(row)]
                dead(reason, int(batch.offsets[i]), batch.keys[i], batch.values[i])
            if self.log_topic is not None:
                refused = {id(row) for row, _ in rejected}
                emission.records.extend(
                    write_log_record(self.log_topic, row)
                    for row, _ in entries if id(row) not in refused)
        if len(batch):
            self.next_offset[batch.topic] = int(batch.offsets[-1]) + 1
        return emission

    def commit_offset(self, topic: str) -> int | None:
        return self.next_offset.get(topic)

    def snapshot(self) -> Snapshot:
        return {"next_offset": dict(self.next_offset)}

    def restore(self, snapshot: Snapshot) -> None:
        self.next_offset = {k: int(v) for k, v in snapshot.get("next_offset", {}).items()}


def write_log_record(topic: str, row: OnlineRow) -> OutputRecord:
    """A row of the write log (NaN is written as null: both mean "no value")."""
    body = {"view": row.view, "entity": row.entity, "event_ms": row.event_ms,
            "values": dict(row.values)}
    return OutputRecord(topic, f"{row.view}|{row.entity}|{row.event_ms}",
                        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), row.entity)


def online_sink_processor(
    kafka: KafkaSettings,
    store: FeatureStore,
    kinds: Mapping[str, str],
    *,
    group: str = "braid-online-sink",
    dead_letter_topic: str,
    checkpoint_topic: str,
    batch_size: int = 10_000,
    writer_factory: Callable[[FeatureStore], OnlineWriter] = online_writer,
    log_topic: str | None = None,
) -> StreamProcessor:
    """The sink as a processor over the topics of `kinds` (topic -> kind), one writer shared by
    every partition's operator (one store, one registry read); `log_topic`: the write log."""
    writer = writer_factory(store)
    return StreamProcessor(
        kafka,
        ProcessorConfig(group, tuple(kinds), batch_size=batch_size,
                        dead_letter_topic=dead_letter_topic, checkpoint_topic=checkpoint_topic),
        lambda partition: OnlineSinkOperator(writer, kinds, log_topic),
    )
