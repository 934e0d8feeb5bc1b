"""Point-in-time correct training sets from a Feast feature service, with a record of what was read.

    from training.training_sets import training_set
    ts = training_set("markets_direction_v1", start="2018-05-08", end="2018-05-09",
                      pairs=["XBT/USD"])
    ts.frame          # pandas DataFrame: entity rows + features (view__feature names)
    ts.record.to_dict()  # feature service, Delta table versions, entity-row digest

Entity rows come from the caller (`entity_df`: the entity column and `event_timestamp`) or from a
time range: then every row of the service's first feature view in `[start, end)` for the given
pairs (clients) is one entity row at its own event time (a candle's end, a reading's time).
Values follow Feast's point-in-time semantics: each feature is the latest row whose event
timestamp is at or before the entity row's and within the view's TTL, so a value from after the
row's time is never returned, whatever the table holds later. Over Braid's Delta sources they are
computed by `serving.point_in_time` (a DuckDB ASOF JOIN per view: 1M entity rows in seconds
where Feast's own join takes minutes; a test holds it equal to Feast's `get_historical_features`
value for value); any other source goes through Feast's `get_historical_features`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd
from deltalake import DeltaTable
from feast import FeatureService, FeatureStore, FeatureView
from feast.errors import FeatureServiceNotFoundException
from feast.infra.offline_stores.file_source import FileSource

from serving.duckdb_delta import ensure_delta_extension
from serving.offline_store import EVENT_TIMESTAMP, TIMESTAMP_MS_TAG, source_filters
from serving.point_in_time import ViewRequest, historical_features, supports
from serving.store import ServingError, open_store


@dataclass(frozen=True)
class TrainingSetRecord:
    """Enough to rebuild the same set: what was asked and which table versions answered."""

    feature_service: str
    features: list[str]
    table_versions: dict[str, int]
    entity_rows: int
    entity_digest: str
    start: str | None
    end: str | None
    built_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame
    record: TrainingSetRecord


def _utc(value: str | datetime) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def _views_of(store: FeatureStore, service: FeatureService) -> list[FeatureView]:
    return [store.get_feature_view(p.name) for p in service.feature_view_projections]


def _source(view: FeatureView) -> FileSource:
    source = view.batch_source
    if not isinstance(source, FileSource) or TIMESTAMP_MS_TAG not in source.tags:
        raise ServingError(f"feature view {view.name} has no Braid Delta source")
    return source


def entity_rows(view: FeatureView, start: datetime, end: datetime,
                keys: list[str] | None) -> pd.DataFrame:
    """One entity row per row of `view`'s table with event time in `[start, end)`."""
    source = _source(view)
    key = view.entity_columns[0].name
    ts_column = source.tags[TIMESTAMP_MS_TAG]
    ensure_delta_extension()
    conditions = [f"{ts_column} >= ?", f"{ts_column} < ?"]
    params: list[Any] = [int(start.timestamp() * 1000), int(end.timestamp() * 1000)]
    for column, value in source_filters(source):
        conditions.append(f"{column} = ?")
        params.append(value)
    if keys:
        conditions.append(f"{key} IN ({', '.join('?' for _ in keys)})")
        params.extend(keys)
    con = duckdb.connect()
    con.execute("LOAD delta")
    frame = con.execute(
        f"SELECT DISTINCT {key}, make_timestamp({ts_column} * 1000) AS {EVENT_TIMESTAMP} "
        f"FROM delta_scan(?) WHERE {' AND '.join(conditions)} ORDER BY 2, 1",
        [source.path, *params]).df()
    frame[EVENT_TIMESTAMP] = frame[EVENT_TIMESTAMP].dt.tz_localize(UTC)
    return frame


def entity_digest(entity_df: pd.DataFrame) -> str:
    """sha256 over the entity rows in a canonical order (independent of the input order)."""
    canonical = entity_df.sort_values(list(entity_df.columns)).reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(canonical[sorted(canonical.columns)], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def table_versions(views: list[FeatureView]) -> dict[str, int]:
    """The current Delta version of every table the views read."""
    versions = {}
    for view in views:
        path = _source(view).path
        if path not in versions:
            try:
                versions[path] = DeltaTable(path).version()
            except Exception as error:  # deltalake raises TableNotFoundError and friends
                raise ServingError(f"offline table {path} cannot be read: {error}") from error
    return versions


def _features(store: FeatureStore, service: FeatureService, views: list[FeatureView],
              entity_df: pd.DataFrame) -> pd.DataFrame:
    """The service's features for the entity rows (`view__feature` names)."""
    if supports(views):
        requests = [ViewRequest(view, [f.name for f in projection.features],
                                projection.name_alias or projection.name)
                    for view, projection in zip(views, service.feature_view_projections,
                                                strict=True)]
        return historical_features(entity_df, requests)
    return store.get_historical_features(entity_df=entity_df, features=service,
                                         full_feature_names=True).to_df()


def training_set(
    feature_service: str,
    *,
    entity_df: pd.DataFrame | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    pairs: list[str] | None = None,
    clients: list[str] | None = None,
    store: FeatureStore | None = None,
    profile: str = "local",
) -> TrainingSet:
    """A point-in-time correct training set of `feature_service` (see the module docstring)."""
    store = store or open_store(profile)
    try:
        service = store.get_feature_service(feature_service)
    except FeatureServiceNotFoundException as error:
        raise ServingError(f"feature service {feature_service!r} does not exist") from error
    views = _views_of(store, service)
    versions = table_versions(views)
    if entity_df is None:
        if start is None or end is None:
            raise ServingError("give entity_df, or start and end")
        keys = pairs if pairs is not None else clients
        entity_df = entity_rows(views[0], _utc(start), _utc(end), keys)
        if entity_df.empty:
            raise ServingError(f"no rows of {views[0].name} between {start} and {end}"
                               + (f" for {', '.join(keys)}" if keys else ""))
    elif EVENT_TIMESTAMP not in entity_df.columns:
        raise ServingError(f"entity_df needs an {EVENT_TIMESTAMP} column")
    frame = _features(store, service, views, entity_df)
    if table_versions(views) != versions:
        raise ServingError("an offline table changed while the set was read; build it again")
    sort_keys = [c for c in entity_df.columns if c != EVENT_TIMESTAMP] + [EVENT_TIMESTAMP]
    frame = frame.sort_values(sort_keys).reset_index(drop=True)
    record = TrainingSetRecord(
        feature_service=feature_service,
        features=[c for c in frame.columns if c not in entity_df.columns],
        table_versions=versions,
        entity_rows=len(entity_df),
        entity_digest=entity_digest(entity_df),
        start=None if start is None else _utc(start).isoformat(),
        end=None if end is None else _utc(end).isoformat(),
        built_at=datetime.now(UTC).isoformat(),
    )
    return TrainingSet(frame=frame, record=record)
