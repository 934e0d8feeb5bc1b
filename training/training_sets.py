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

**Reproducible.** Every table is read as of one Delta version (time travel): by default each
table's latest version when the set is asked for, or the versions given (`versions=`), or those
of a :class:`TrainingSetRecord` (`training_set(record)`: the same service, range and keys, as
of the recorded versions). The record carries the frame's digest (`training.frame_digest`, on a
canonical form), so a rebuild is compared with the original by one value, even after later
backfills rewrote the range. A version the table no longer holds (vacuumed files, cleaned-up
log) is one `TableVersionGone` error naming the table, the version and the retention settings
(`serving.table_versions`).

    again = training_set(TrainingSetRecord.from_dict(logged))   # logged: training_set.json
    assert again.record.frame_digest == logged["frame_digest"]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView
from feast.infra.offline_stores.file_source import FileSource

from serving.duckdb_delta import ensure_delta_extension
from serving.offline_store import EVENT_TIMESTAMP, TIMESTAMP_MS_TAG, source_filters
from serving.point_in_time import ViewRequest, delta_scan, historical_features, supports
from serving.store import ServingError, open_store
from serving.store import feature_service as registered_service
from serving.table_versions import current_version, require_version
from training.frame_digest import frame_digest


@dataclass(frozen=True)
class TrainingSetRecord:
    """Enough to rebuild the same set: what was asked, which table versions answered, and the
    digest of the frame they gave (`training.frame_digest`, rows in entity-key order)."""

    feature_service: str
    features: list[str]
    table_versions: dict[str, int]
    entity_rows: int
    entity_digest: str
    start: str | None
    end: str | None
    built_at: str
    #: The entity keys asked for (pairs, clients) with a range; None: every key, or entity_df.
    keys: list[str] | None = None
    #: sha256 of the frame's canonical form; "" in records written before it was recorded.
    frame_digest: str = ""
    frame_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSetRecord:
        """The record of `to_dict` (e.g. a run's `training_set.json`); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        missing = {"feature_service", "table_versions", "entity_digest"} - set(data)
        if missing:
            raise ValueError(f"not a training-set record: {sorted(missing)} missing")
        values = {k: v for k, v in data.items() if k in names}
        values["table_versions"] = {str(k): int(v) for k, v in data["table_versions"].items()}
        values.setdefault("features", [])
        values.setdefault("entity_rows", 0)
        values.setdefault("start", None)
        values.setdefault("end", None)
        values.setdefault("built_at", "")
        return cls(**values)


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
                keys: list[str] | None, version: int | None = None) -> pd.DataFrame:
    """One entity row per row of `view`'s table (as of `version`: None, the latest) with event
    time in `[start, end)`."""
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
    scan, scan_params = delta_scan(source.path, version)
    con = duckdb.connect()
    con.execute("LOAD delta")
    frame = con.execute(
        f"SELECT DISTINCT {key}, make_timestamp({ts_column} * 1000) AS {EVENT_TIMESTAMP} "
        f"FROM {scan} WHERE {' AND '.join(conditions)} ORDER BY 2, 1",
        [*scan_params, *params]).df()
    frame[EVENT_TIMESTAMP] = frame[EVENT_TIMESTAMP].dt.tz_localize(UTC)
    return frame


def entity_digest(entity_df: pd.DataFrame) -> str:
    """sha256 over the entity rows in a canonical order (independent of the input order)."""
    canonical = entity_df.sort_values(list(entity_df.columns)).reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(canonical[sorted(canonical.columns)], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def table_versions(views: list[FeatureView]) -> dict[str, int]:
    """The current Delta version of every table the views read."""
    versions: dict[str, int] = {}
    for view in views:
        path = _source(view).path
        if path not in versions:
            versions[path] = current_version(path)
    return versions


def pinned_versions(views: list[FeatureView], wanted: Mapping[str, int]) -> dict[str, int]:
    """The version of every table the views read, from `wanted` (path -> version), each checked
    to be still readable (`serving.table_versions.require_version`)."""
    versions: dict[str, int] = {}
    for view in views:
        path = _source(view).path
        if path in versions:
            continue
        if path not in wanted:
            raise ServingError(f"no version given for offline table {path} (feature view "
                               f"{view.name}); versions were given for {sorted(wanted)}")
        require_version(path, int(wanted[path]))
        versions[path] = int(wanted[path])
    return versions


def _features(store: FeatureStore, service: FeatureService, views: list[FeatureView],
              entity_df: pd.DataFrame, versions: dict[str, int]) -> pd.DataFrame:
    """The service's features for the entity rows (`view__feature` names), each view's table
    read as of its version in `versions`."""
    if supports(views):
        requests = [ViewRequest(view, [f.name for f in projection.features],
                                projection.name_alias or projection.name,
                                versions[_source(view).path])
                    for view, projection in zip(views, service.feature_view_projections,
                                                strict=True)]
        return historical_features(entity_df, requests)
    # Feast's own join reads the latest version: it is the version pinned unless a commit
    # landed meanwhile, which is checked after the read
    frame = store.get_historical_features(entity_df=entity_df, features=service,
                                          full_feature_names=True).to_df()
    if table_versions(views) != versions:
        raise ServingError("an offline table changed while the set was read; build it again")
    return frame


def training_set(
    feature_service: str | TrainingSetRecord,
    *,
    entity_df: pd.DataFrame | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    pairs: list[str] | None = None,
    clients: list[str] | None = None,
    versions: Mapping[str, int] | None = None,
    store: FeatureStore | None = None,
    profile: str = "local",
) -> TrainingSet:
    """A point-in-time correct training set of `feature_service` (see the module docstring).

    `versions` (table path -> Delta version) reads each table as of that version instead of
    its latest. A :class:`TrainingSetRecord` in place of the service name rebuilds that set: its
    service, range, keys and table versions (`entity_df` must be given again when the record
    was built from one: its digest is in the record)."""
    if isinstance(feature_service, TrainingSetRecord):
        record = feature_service
        if versions is not None or start is not None or end is not None or pairs or clients:
            raise ServingError("a record gives the range, keys and versions: pass only "
                               "entity_df (when the record was built from one) and the store")
        if entity_df is None and (record.start is None or record.end is None):
            raise ServingError("the record's entity rows came from an entity_df: pass it again")
        feature_service, versions = record.feature_service, record.table_versions
        start, end, pairs = record.start, record.end, record.keys
    store = store or open_store(profile)
    service = registered_service(store, feature_service)
    views = _views_of(store, service)
    pinned = table_versions(views) if versions is None else pinned_versions(views, versions)
    keys = pairs if pairs is not None else clients
    if entity_df is None:
        if start is None or end is None:
            raise ServingError("give entity_df, or start and end")
        entity_df = entity_rows(views[0], _utc(start), _utc(end), keys,
                                pinned[_source(views[0]).path])
        if entity_df.empty:
            raise ServingError(f"no rows of {views[0].name} between {start} and {end}"
                               + (f" for {', '.join(keys)}" if keys else ""))
    elif EVENT_TIMESTAMP not in entity_df.columns:
        raise ServingError(f"entity_df needs an {EVENT_TIMESTAMP} column")
    frame = _features(store, service, views, entity_df, pinned)
    sort_keys = [c for c in entity_df.columns if c != EVENT_TIMESTAMP] + [EVENT_TIMESTAMP]
    frame = frame.sort_values(sort_keys).reset_index(drop=True)
    record = TrainingSetRecord(
        feature_service=feature_service,
        features=[c for c in frame.columns if c not in entity_df.columns],
        table_versions=pinned,
        entity_rows=len(entity_df),
        entity_digest=entity_digest(entity_df),
        start=None if start is None else _utc(start).isoformat(),
        end=None if end is None else _utc(end).isoformat(),
        built_at=datetime.now(UTC).isoformat(),
        keys=None if keys is None else list(keys),
        frame_digest=frame_digest(frame, sort_keys),
        frame_rows=len(frame),
    )
    return TrainingSet(frame=frame, record=record)
