"""The online sink's writer through Feast's own API (`write_to_online_store`): every store.

One `FeatureStore` whose registry is read once and whose views are resolved once (Feast issue
#2051: a registry refresh per call costs seconds). Never older over newer: the writer keeps the
event time and log position it last wrote per (view, entity), seeded from the online store
itself the first time it meets an entity (its event time; the position is not stored there), and
drops rows that do not supersede it (`OnlineRow.supersedes`: a later event time, or the same one
at a later position; Feast's Redis store skips older-or-equal rows too; its SQLite store upserts
whatever it is given, so this check is what holds there). Unlike the Redis bulk writer, which
keeps each row's position in Redis, a new process knows no stored position: a replay after a
restart may write a row of an already-written event time again, for a moment, until the replay
reaches that event time's last message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from feast import FeatureStore, FeatureView
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from streaming.sinks.online_rows import OnlineRow

EVENT_TIMESTAMP = "event_timestamp"

Rejected = tuple[OnlineRow, str]
"""A row the store would not take, and why (the dead-letter reason)."""


@dataclass
class OnlineWriter:
    """Feature views resolved once, the latest written event time per (view, entity)."""

    store: FeatureStore
    views: dict[str, FeatureView] = field(default_factory=dict)
    # (event time, log position) last written per (view, entity); position -1: unknown
    latest: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    rows_written: int = 0

    def __post_init__(self) -> None:
        self.views = {v.name: v for v in self.store.list_feature_views()}

    def stored(self, view: str, entity_column: str, entities: list[str]
               ) -> list[tuple[int, int]]:
        """(event time, position) of the online rows of `entities` (-1: none, unknown); each
        read from the store once."""
        missing = [e for e in entities if (view, e) not in self.latest]
        if missing:
            provider = self.store._get_provider()
            keys = [EntityKey(join_keys=[entity_column], entity_values=[Value(string_val=e)])
                    for e in missing]
            found = provider.online_read(self.store.config, self.views[view], keys)
            for entity, (stamp, _) in zip(missing, found, strict=True):
                self.latest[(view, entity)] = (
                    -1 if stamp is None else round(stamp.timestamp() * 1000), -1)
        return [self.latest[(view, e)] for e in entities]

    def stored_ms(self, view: str, entity_column: str, entities: list[str]) -> list[int]:
        """Event times of the online rows of `entities` (-1: none); each read once."""
        return [ms for ms, _ in self.stored(view, entity_column, entities)]

    def write(self, view: str, rows: list[OnlineRow]) -> list[Rejected]:
        """Write the rows newer than what the store holds (one row per entity). Returns the
        rows refused one by one (none here: Feast refuses a frame as a whole, by raising)."""
        if not rows:
            return []
        stored = self.stored(view, rows[0].entity_column, [r.entity for r in rows])
        fresh = [r for r, (ms, position) in zip(rows, stored, strict=True)
                 if r.supersedes(ms, position)]
        if not fresh:
            return []
        names = [f.name for f in self.views[view].features]
        frame = pd.DataFrame([{name: r.values.get(name) for name in names} for r in fresh],
                             columns=names)
        frame.insert(0, fresh[0].entity_column, [r.entity for r in fresh])
        frame[EVENT_TIMESTAMP] = pd.to_datetime([r.event_ms for r in fresh], unit="ms", utc=True)
        self.store.write_to_online_store(view, frame)
        for r in fresh:
            self.latest[(view, r.entity)] = (r.event_ms, r.position)
        self.rows_written += len(fresh)
        return []
