"""A feature service's online features as model input: one float64 column per feature, named
`<view>__<feature>` in the service's order (`features.model_contract`), with each view's event
time, for many entities in one Feast call.

The stream predictor and the HTTP API read through this, so both ask Feast exactly what
training asked: `store.get_online_features(features=<the FeatureService>, entity_rows=...,
full_feature_names=True)`. Feast's response carries each row's event time; it is read from the
response's protobuf at millisecond precision (`to_dict(include_event_timestamps=True)` rounds it
to seconds, too coarse for 1-second candles). A view with no row for an entity gets event time
`NO_ROW` and NaN values (so does a view some of whose features are absent: a first write read
half-way); a stored null is NaN too (never 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from feast import FeatureService, FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from features.model_contract import feature_columns
from serving.offline_store import WINDOW_MS_TAG

NO_ROW = -1
"""Event time of a view that has no online row for an entity."""


@dataclass(frozen=True)
class ServiceView:
    """One view of a feature service: its features (in service order), TTL and, for the
    markets views, the candle duration its rows hold."""

    name: str
    features: tuple[str, ...]
    ttl_ms: int  # 0: no TTL
    window_ms: int | None

    @property
    def columns(self) -> list[str]:
        return [f"{self.name}__{feature}" for feature in self.features]


@dataclass(frozen=True)
class OnlineVectors:
    """The service's features of `entities`: `values` (n, columns) float64, NaN where null or
    absent; `event_ms` (n, views) int64, the event time of each view's row (`NO_ROW`: none)."""

    entities: list[str]
    values: np.ndarray
    event_ms: np.ndarray


def service_views(store: FeatureStore, service: FeatureService) -> list[ServiceView]:
    """The views of `service` in order, with the TTL and candle duration of each."""
    views = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        ttl = view.ttl
        tag = view.batch_source.tags.get(WINDOW_MS_TAG) if view.batch_source else None
        views.append(ServiceView(
            projection.name_to_use(), tuple(f.name for f in projection.features),
            int(ttl.total_seconds() * 1000) if ttl else 0, int(tag) if tag else None))
    return views


class FeatureServiceReader:
    """Reads one feature service for one entity key (e.g. `pair`), registry objects resolved
    once."""

    def __init__(self, store: FeatureStore, service: str, entity: str) -> None:
        self.store = store
        self.service = store.get_feature_service(service)
        self.entity = entity
        self.views = service_views(store, self.service)
        self.columns = feature_columns([(v.name, list(v.features)) for v in self.views])

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def window_ms(self) -> int:
        """The candle duration every view of the service holds (markets services)."""
        durations = {v.window_ms for v in self.views}
        if len(durations) != 1 or None in durations:
            raise ValueError(f"feature service {self.name} does not hold one candle duration: "
                             f"{sorted(str(d) for d in durations)}")
        return int(next(iter(durations)))  # type: ignore[arg-type]

    def read(self, entities: Sequence[str]) -> OnlineVectors:
        """The online features of `entities` (one Feast call for all of them)."""
        n = len(entities)
        values = np.full((n, len(self.columns)), np.nan)
        event_ms = np.full((n, len(self.views)), NO_ROW, dtype=np.int64)
        if n == 0:
            return OnlineVectors([], values, event_ms)
        response = self.store.get_online_features(
            features=self.service, entity_rows=[{self.entity: e} for e in entities],
            full_feature_names=True)
        proto = response.proto
        index = {name: i for i, name in enumerate(proto.metadata.feature_names.val)}
        j = 0
        for v, view in enumerate(self.views):
            incomplete = np.zeros(n, dtype=bool)
            for c, column in enumerate(view.columns):
                vector = proto.results[index[column]]
                for i in range(n):
                    value = vector.values[i]
                    kind = value.WhichOneof("val")
                    if kind is not None and kind != "null_val":
                        values[i, j] = float(getattr(value, kind))
                    if vector.statuses[i] == FieldStatus.NOT_FOUND:
                        incomplete[i] = True
                    elif c == 0:
                        stamp = vector.event_timestamps[i]
                        event_ms[i, v] = stamp.seconds * 1000 + stamp.nanos // 1_000_000
                j += 1
            # a row missing some of its features (a first write read half-way) is no row yet
            event_ms[incomplete, v] = NO_ROW
        return OnlineVectors(list(entities), values, event_ms)
