"""The online sink's writer through Feast's own API (`write_to_online_store`): every store.

One `FeatureStore` whose registry is read once and whose views are resolved once (Feast issue
#2051: a registry refresh per call costs seconds). Never older over newer: the writer keeps the
event time it last wrote per (view, entity), seeded from the online store itself the first time
it meets an entity, and drops rows at or before it (Feast's Redis store skips older-or-equal rows
too; its SQLite store upserts whatever it is given, so this check is what holds there).
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

    def write(self, view: str, rows: list[OnlineRow]) -> list[Rejected]:
        """Write the rows newer than what the store holds (one row per entity). Returns the
        rows refused one by one (none here: Feast refuses a frame as a whole, by raising)."""
        if not rows:
            return []
        stored = self.stored_ms(view, rows[0].entity_column, [r.entity for r in rows])
        fresh = [r for r, ms in zip(rows, stored, strict=True) if r.event_ms > ms]
        if not fresh:
            return []
        names = [f.name for f in self.views[view].features]
        frame = pd.DataFrame([{name: r.values.get(name) for name in names} for r in fresh],
                             columns=names)
        frame.insert(0, fresh[0].entity_column, [r.entity for r in fresh])
        frame[EVENT_TIMESTAMP] = pd.to_datetime([r.event_ms for r in fresh], unit="ms", utc=True)
        self.store.write_to_online_store(view, frame)
        for r in fresh:
            self.latest_ms[(view, r.entity)] = r.event_ms
        self.rows_written += len(fresh)
        return []
