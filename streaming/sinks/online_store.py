"""The online-store sink: final candles, indicator rows and sensor features into Feast's online
store.

An operator on the streaming runtime (its own consumer group, `braid online-sink`): each batch
is decoded and routed to its feature view (`serving.feast_definitions` names them):

| input topic | kind | view | entity | event time |
|---|---|---|---|---|
| candles | `candles` | `candles_<duration>` | pair | window end |
| technical_indicators | `indicators` | `indicators_<duration>` | pair | window end |
| FA, FI, FD | `sensor_feature` | `sensor_fa` ... (`FA`, `FA_bin`) | client | reading time |
| SX, SY | `sensor_reading:SX` ... | `sensor_sx` ... (`SX`) | client | reading time |

A batch keeps the newest row per (view, entity) and is written with one `write_to_online_store`
call per view, through one `FeatureStore` whose registry is read once and whose views are
resolved once (Feast issue #2051: a registry refresh per call costs seconds).

Never older over newer: the sink keeps the event time it last wrote per (view, entity), seeded
from the online store itself the first time it meets an entity, and drops rows at or before it.
Feast's Redis store skips older-or-equal rows too; its SQLite store does not (it upserts whatever
it is given), so the sink's own check is what holds on every store.

Effectively once: writes are synchronous, so the safe offset is one past the batch's last
message; a replay after kill -9 rewrites rows carrying the same values (outputs are keyed) or
drops them as not newer, so the store ends as an uninterrupted run leaves it. Rows that cannot be
decoded, have no feature view or fail to write go to the dead-letter topic with the reason; the
sink never stops on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd
import structlog
from feast import FeatureStore, FeatureView
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from features.windows import format_duration
from streaming.runtime.operator import PartitionOperator, Snapshot
from streaming.runtime.processor import ProcessorConfig, StreamProcessor
from streaming.runtime.records import DeadLetter, Emission, InputBatch
from streaming.settings import KafkaSettings

log = structlog.get_logger(__name__)

EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class OnlineRow:
    """One row for the online store: its view, entity, event time (ms) and feature values."""

    view: str
    entity_column: str
    entity: str
    event_ms: int
    values: Mapping[str, object]


class InvalidRow(ValueError):
    """A message the sink cannot turn into an online row (the text is the dead-letter reason)."""


@dataclass
class OnlineWriter:
    """Feature views resolved once, the latest written event time per (view, entity)."""

    store: FeatureStore
    views: dict[str, FeatureView] = field(default_factory=dict)
    latest_ms: dict[tuple[str, str], int] = field(default_factory=dict)
    rows_written: int = 0

    def __post_init__(self) -> None:
        self.views = {v.name: v for v in self.store.list_feature_views()}

    def stored_ms(self, view: str, entity_column: str, entities: list[str]) -> list[int]:
        """Event times of the online rows of `entities` (-1: none); each read once."""
        missing = [e for e in entities if (view, e) not in self.latest_ms]
        if missing:
            provider = self.store._get_provider()
            keys = [EntityKey(join_keys=[entity_column], entity_values=[Value(string_val=e)])
                    for e in missing]
            found = provider.online_read(self.store.config, self.views[view], keys)
            for entity, (stamp, _) in zip(missing, found, strict=True):
                self.latest_ms[(view, entity)] = (
                    -1 if stamp is None else round(stamp.timestamp() * 1000))
        return [self.latest_ms[(view, e)] for e in entities]

    def write(self, view: str, rows: list[OnlineRow]) -> int:
        """Write the rows newer than what the store holds (one row per entity); returns how
        many were written."""
        if not rows:
            return 0
        stored = self.stored_ms(view, rows[0].entity_column, [r.entity for r in rows])
        fresh = [r for r, ms in zip(rows, stored, strict=True) if r.event_ms > ms]
        if not fresh:
            return 0
        names = [f.name for f in self.views[view].features]
        frame = pd.DataFrame([{name: r.values.get(name) for name in names} for r in fresh],
                             columns=names)
        frame.insert(0, fresh[0].entity_column, [r.entity for r in fresh])
        frame[EVENT_TIMESTAMP] = pd.to_datetime([r.event_ms for r in fresh], unit="ms", utc=True)
        self.store.write_to_online_store(view, frame)
        for r in fresh:
            self.latest_ms[(view, r.entity)] = r.event_ms
        self.rows_written += len(fresh)
        return len(fresh)


def _positive_int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidRow(f"schema: {name} must be a positive integer")
    return value


def _string(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRow(f"schema: {name} must be a non-empty string")
    return value


def _number(value: object, name: str) -> float:
    if value is None:
        return math.nan  # null on the topics is "not warmed up": NaN as offline, never 0
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidRow(f"schema: {name} must be a number")
    return float(value)


def _market_row(kind: str, obj: dict[str, Any]) -> OnlineRow:
    pair = _string(obj, "pair")
    view = f"{kind}_{format_duration(_positive_int(obj, 'window_ms'))}"
    end = _positive_int(obj, "window_end_ms")
    values = {k: (v if isinstance(v, int) and not isinstance(v, bool) else _number(v, k))
              for k, v in obj.items() if k not in ("pair", "window_ms")}
    return OnlineRow(view, "pair", pair, end, values)


def _sensor_feature_row(obj: dict[str, Any]) -> OnlineRow:
    name = _string(obj, "feature")
    value = _number(obj.get("value"), "value")
    bin_ = obj.get("bin")
    if not isinstance(bin_, int) or isinstance(bin_, bool):
        raise InvalidRow("schema: bin must be an integer")
    return OnlineRow(f"sensor_{name.lower()}", "client", _string(obj, "client"),
                     _positive_int(obj, "timestamp_ms"), {name: value, f"{name}_bin": bin_})


def _sensor_reading_row(sensor: str, obj: dict[str, Any]) -> OnlineRow:
    value = _number(obj.get("value"), "value")
    if not value.is_integer():
        raise InvalidRow(f"schema: {sensor} must be an integer category")
    return OnlineRow(f"sensor_{sensor.lower()}", "client", _string(obj, "client"),
                     _positive_int(obj, "timestamp_ms"), {sensor: int(value)})


def decode_row(kind: str, raw: bytes | None) -> OnlineRow:
    """The online row of one message of a topic of `kind` (see the module table)."""
    if not raw:
        raise InvalidRow("decode: empty message")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRow(f"decode: not JSON ({error.msg})") from error
    if not isinstance(obj, dict):
        raise InvalidRow("decode: not a JSON object")
    if kind in ("candles", "indicators"):
        return _market_row(kind, obj)
    if kind == "sensor_feature":
        return _sensor_feature_row(obj)
    if kind.startswith("sensor_reading:"):
        return _sensor_reading_row(kind.split(":", 1)[1], obj)
    raise ValueError(f"unknown sink kind {kind!r}")


class OnlineSinkOperator(PartitionOperator):
    """One partition of the sink: decode, route, keep the newest per entity, write, commit."""

    def __init__(self, writer: OnlineWriter, kinds: Mapping[str, str]) -> None:
        self.writer = writer
        self.kinds = kinds  # input topic -> kind
        self.next_offset: dict[str, int] = {}

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        emission = Emission()
        kind = self.kinds[batch.topic]
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
            current = newest.get((row.view, row.entity))
            if current is None or row.event_ms > current[0].event_ms:
                newest[(row.view, row.entity)] = (row, i)
        by_view: dict[str, list[tuple[OnlineRow, int]]] = {}
        for (view, _), entry in newest.items():
            by_view.setdefault(view, []).append(entry)
        for view, entries in by_view.items():
            try:
                self.writer.write(view, [row for row, _ in entries])
            except Exception as error:  # the store refused the batch: each row is reported
                log.warning("online write failed", view=view, error=str(error))
                for _, i in entries:
                    dead(f"online-sink: write failed: {error}", int(batch.offsets[i]),
                         batch.keys[i], batch.values[i])
        if len(batch):
            self.next_offset[batch.topic] = int(batch.offsets[-1]) + 1
        return emission

    def commit_offset(self, topic: str) -> int | None:
        return self.next_offset.get(topic)

    def snapshot(self) -> Snapshot:
        return {"next_offset": dict(self.next_offset)}

    def restore(self, snapshot: Snapshot) -> None:
        self.next_offset = {k: int(v) for k, v in snapshot.get("next_offset", {}).items()}


def online_sink_processor(
    kafka: KafkaSettings,
    store: FeatureStore,
    kinds: Mapping[str, str],
    *,
    group: str = "braid-online-sink",
    dead_letter_topic: str,
    checkpoint_topic: str,
    batch_size: int = 10_000,
    writer_factory: Callable[[FeatureStore], OnlineWriter] = OnlineWriter,
) -> StreamProcessor:
    """The sink as a processor over the topics of `kinds` (topic -> kind), one writer shared by
    every partition's operator (one store, one registry read)."""
    writer = writer_factory(store)
    return StreamProcessor(
        kafka,
        ProcessorConfig(group, tuple(kinds), batch_size=batch_size,
                        dead_letter_topic=dead_letter_topic, checkpoint_topic=checkpoint_topic),
        lambda partition: OnlineSinkOperator(writer, kinds),
    )
