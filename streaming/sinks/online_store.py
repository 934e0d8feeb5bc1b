"""The online-store sink: final candles and indicator rows into Feast's online store.

An operator on the streaming runtime (its own consumer group): each batch of `candles` /
`technical_indicators` messages is decoded, routed by kind and duration to the feature view
`<kind>_<duration>` (`serving.feast_definitions`), reduced to the newest row per pair, and
written in one `write_to_online_store` call per view, through one `FeatureStore` whose registry
is read once (views resolved once: Feast issue #2051, a registry refresh per call costs seconds).

Never older over newer: the sink keeps the event timestamp (window end) it last wrote per view
and pair, seeded from the online store itself the first time it sees a pair, and drops rows at
or before it. Feast's Redis store skips older-or-equal rows too, its SQLite store does not (it
upserts whatever it is given): the sink's own check is what holds on every store.

Effectively once: writes are synchronous, so the safe offset is one past the last message of
the last written batch; a replay after kill -9 rewrites rows that carry the same values (keyed
outputs) or drops them as not newer, so the store ends as an uninterrupted run leaves it.
Rows that cannot be decoded, have no feature view or fail to write go to the dead-letter topic
with the reason; the sink never stops on them.
"""

from __future__ import annotations

import math
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
from streaming.runtime.records import DeadLetter, Emission, InputBatch

log = structlog.get_logger(__name__)

EVENT_TIMESTAMP = "event_timestamp"


@dataclass
class OnlineWriter:
    """Feature views resolved once, the latest written event time per (view, pair)."""

    store: FeatureStore
    views: dict[str, FeatureView] = field(default_factory=dict)
    latest_ms: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.views = {v.name: v for v in self.store.list_feature_views()}

    def stored_ms(self, view: str, pair: str) -> int:
        """The event time of the online row of `pair` in `view` (-1: none), read once."""
        key = (view, pair)
        if key not in self.latest_ms:
            provider = self.store._get_provider()
            entity = EntityKey(join_keys=["pair"], entity_values=[Value(string_val=pair)])
            [(stamp, _)] = provider.online_read(self.store.config, self.views[view], [entity])
            self.latest_ms[key] = -1 if stamp is None else int(stamp.timestamp() * 1000)
        return self.latest_ms[key]

    def write(self, view: str, rows: list[dict[str, Any]]) -> int:
        """Write the rows newer than what the store holds; returns how many were written."""
        fresh = [r for r in rows if _ms(r, "window_end_ms") > self.stored_ms(view, str(r["pair"]))]
        if not fresh:
            return 0
        frame = pd.DataFrame(fresh)
        names = [f.name for f in self.views[view].features]
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame["window_end_ms"], unit="ms", utc=True)
        self.store.write_to_online_store(view, frame[["pair", *names, EVENT_TIMESTAMP]])
        for pair, end in zip(frame["pair"], frame["window_end_ms"], strict=True):
            self.latest_ms[(view, str(pair))] = int(end)
        return len(frame)


class OnlineSinkOperator(PartitionOperator):
    """One partition of the sink: decode, route, keep the newest per pair, write, commit."""

    def __init__(self, writer: OnlineWriter, kinds: dict[str, str]) -> None:
        self.writer = writer
        self.kinds = kinds  # topic -> "candles" | "indicators"
        self.next_offset: dict[str, int] = {}

    def process(self, batch: InputBatch, now_ms: int) -> Emission:
        emission = Emission()
        newest: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        for i, raw in enumerate(batch.values):
            offset = int(batch.offsets[i])
            row, reason = _decode(raw)
            view = None
            if row is not None:
                view = f"{self.kinds[batch.topic]}_{format_duration(_ms(row, 'window_ms'))}"
                if view not in self.writer.views:
                    row, reason = None, f"online-sink: no feature view {view}"
            if row is None or view is None:
                emission.dead_letters.append(DeadLetter(
                    reason or "online-sink: invalid", batch.topic, batch.partition, offset,
                    batch.keys[i], raw))
                continue
            key = (view, str(row["pair"]))
            if key not in newest or _ms(row, "window_end_ms") > _ms(newest[key][0],
                                                                    "window_end_ms"):
                newest[key] = (row, offset)
        by_view: dict[str, list[tuple[dict[str, Any], int]]] = {}
        for (view, _), entry in newest.items():
            by_view.setdefault(view, []).append(entry)
        for view, entries in by_view.items():
            try:
                self.writer.write(view, [row for row, _ in entries])
            except Exception as error:  # the store refused the batch: every row is reported
                log.warning("online write failed", view=view, error=str(error))
                for row, offset in entries:
                    emission.dead_letters.append(DeadLetter(
                        f"online-sink: write failed: {error}"[:500], batch.topic,
                        batch.partition, offset, None, orjson.dumps(row)))
        if len(batch):
            self.next_offset[batch.topic] = int(batch.offsets[-1]) + 1
        return emission

    def commit_offset(self, topic: str) -> int | None:
        return self.next_offset.get(topic)

    def snapshot(self) -> Snapshot:
        return {"next_offset": dict(self.next_offset)}

    def restore(self, snapshot: Snapshot) -> None:
        self.next_offset = {k: int(v) for k, v in snapshot.get("next_offset", {}).items()}


def _decode(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    if not raw:
        return None, "decode: empty message"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return None, f"decode: not JSON ({error.msg})"
    if not isinstance(obj, dict):
        return None, "decode: not a JSON object"
    if not isinstance(obj.get("pair"), str):
        return None, "schema: pair must be a string"
    for name in ("window_ms", "window_end_ms"):
        if not isinstance(obj.get(name), int) or obj[name] <= 0:
            return None, f"schema: {name} must be a positive integer"
    # NaN travels as JSON null on the topics; the offline tables hold NaN: write NaN, never 0.
    return {k: (math.nan if v is None else v) for k, v in obj.items()}, None


def _ms(row: dict[str, Any], name: str) -> int:
    return int(row[name])
