"""Online/offline consistency: is what the online store serves what the batch layer computes?

For every feature view of a pipeline (markets: `candles_*`, `indicators_*`; sensors:
`sensor_*`) and every entity of its offline table, the report takes

- the **online** row: what the online store holds now (and would serve), with its event time;
- the **offline** row: the same view's row in the Delta table at that event time, recomputed by
  the batch layer (the backfills), and the latest offline row in the range.

Only online rows whose event time lies in `[start, end)` are judged. Then per view: rows
compared (online and offline rows at the same event time), **missing** (the offline table has
a row in the range for an entity the online store lacks or holds older), **extra** (an online
row with no offline row at its event time); per feature: match rate (|diff| <= 1e-9; NaN, null
and NaN match: both mean "no value"), largest difference, and a few example mismatches.

**History.** What the store holds now is only each entity's latest row. Given `written` (the
online sink's write log, `online_writes`: every row the store was written, read by `braid
consistency --history`), every logged row in the range is judged the same way too, so a value
that was served an hour ago and has since been overwritten is compared as well. A logged row at
the event time the store still holds is judged once, by what the store holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import orjson
from feast import FeatureStore, FeatureView
from feast.infra.offline_stores.file_source import FileSource
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type

from serving.duckdb_delta import ensure_delta_extension
from serving.offline_store import TIMESTAMP_MS_TAG, source_filters
from serving.store import ServingError

WrittenRows = Mapping[str, Mapping[tuple[str, int], Mapping[str, Any]]]
"""view -> (entity, event ms) -> feature values: the rows the online store was written."""

TOLERANCE = 1e-9
EXAMPLES = 5
PIPELINE_VIEWS = {"markets": ("candles_", "indicators_"), "sensors": ("sensor_",)}


@dataclass
class FeatureResult:
    view: str
    feature: str
    compared: int = 0
    matched: int = 0
    max_abs_diff: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def match_rate(self) -> float:
        return 1.0 if self.compared == 0 else self.matched / self.compared


@dataclass
class ViewResult:
    view: str
    entities: int = 0
    compared: int = 0
    missing: int = 0
    extra: int = 0
    missing_examples: list[dict[str, Any]] = field(default_factory=list)
    extra_examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ConsistencyReport:
    pipeline: str
    start: str
    end: str
    views: list[ViewResult]
    features: list[FeatureResult]

    @property
    def compared(self) -> int:
        return sum(v.compared for v in self.views)

    @property
    def match_rate(self) -> float:
        """Matched values over compared values, missing and extra rows counting as mismatches."""
        values = sum(f.compared for f in self.features)
        matched = sum(f.matched for f in self.features)
        per_row = {v.view: sum(1 for f in self.features if f.view == v.view) for v in self.views}
        absent = sum((v.missing + v.extra) * per_row[v.view] for v in self.views)
        total = values + absent
        return 1.0 if total == 0 else matched / total

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "start": self.start, "end": self.end,
            "match_rate": self.match_rate, "rows_compared": self.compared,
            "views": [asdict(v) for v in self.views],
            "features": [{**asdict(f), "match_rate": f.match_rate} for f in self.features],
        }


def values_match(online: object, offline: object) -> tuple[bool, float]:
    """Whether two values agree, and their absolute difference (0 when not numeric)."""
    def missing(value: object) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    if missing(online) or missing(offline):
        return missing(online) and missing(offline), 0.0 if missing(online) == missing(
            offline) else math.inf
    if isinstance(online, int | float) and isinstance(offline, int | float):
        diff = abs(float(online) - float(offline))
        return diff <= TOLERANCE, diff
    return online == offline, 0.0 if online == offline else math.inf


def _source(view: FeatureView) -> FileSource:
    source = view.batch_source
    if not isinstance(source, FileSource) or TIMESTAMP_MS_TAG not in source.tags:
        raise ServingError(f"feature view {view.name} has no Braid Delta source")
    return source


def _offline_rows(view: FeatureView, con: duckdb.DuckDBPyConnection
                  ) -> dict[tuple[str, int], dict[str, Any]]:
    """Every offline row of `view`, by (entity, event ms)."""
    source = _source(view)
    key = view.entity_columns[0].name
    ts = source.tags[TIMESTAMP_MS_TAG]
    names = [f.name for f in view.features]
    filters = source_filters(source)
    where = ("WHERE " + " AND ".join(f'"{c}" = ?' for c, _ in filters)) if filters else ""
    columns = ", ".join(f'"{c}"' for c in dict.fromkeys([key, ts, *names]))
    try:
        table = con.execute(f"SELECT {columns} FROM delta_scan(?) {where}",
                            [source.path, *(v for _, v in filters)]).to_arrow_table()
    except duckdb.Error as error:
        raise ServingError(f"offline table of {view.name} cannot be read: "
                           f"{str(error).splitlines()[0]}") from error
    rows = table.to_pylist()
    return {(str(r[key]), int(r[ts])): r for r in rows}


def _online_rows(store: FeatureStore, view: FeatureView, entities: list[str]
                 ) -> dict[str, tuple[int, dict[str, Any]]]:
    key = view.entity_columns[0].name
    keys = [EntityKey(join_keys=[key], entity_values=[Value(string_val=e)]) for e in entities]
    found = store._get_provider().online_read(store.config, view, keys)
    out = {}
    for entity, (stamp, values) in zip(entities, found, strict=True):
        if stamp is None or values is None:
            continue
        out[entity] = (round(stamp.timestamp() * 1000),
                       {k: feast_value_type_to_python_type(v) for k, v in values.items()})
    return out


def compare_view(store: FeatureStore, view: FeatureView, start_ms: int, end_ms: int,
                 con: duckdb.DuckDBPyConnection,
                 written: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
                 ) -> tuple[ViewResult, list[FeatureResult]]:
    offline = _offline_rows(view, con)
    names = [f.name for f in view.features]
    entities = sorted({entity for entity, _ in offline})
    online = _online_rows(store, view, entities)
    result = ViewResult(view.name, entities=len(entities))
    features = {n: FeatureResult(view.name, n) for n in names}
    latest_offline: dict[str, int] = {}
    for entity, ts in offline:
        if start_ms <= ts < end_ms and ts > latest_offline.get(entity, -1):
            latest_offline[entity] = ts

    def judge(entity: str, ts: int, values: Mapping[str, Any]) -> bool:
        """Compare one online row with the offline row at its event time; False: extra."""
        row = offline.get((entity, ts))
        if row is None:
            result.extra += 1
            if len(result.extra_examples) < EXAMPLES:
                result.extra_examples.append({"entity": entity, "event_ms": ts})
            return False
        result.compared += 1
        for name in names:
            ok, diff = values_match(values.get(name), row[name])
            feature = features[name]
            feature.compared += 1
            feature.matched += ok
            if not ok:
                feature.max_abs_diff = max(feature.max_abs_diff, diff)
                if len(feature.examples) < EXAMPLES:
                    feature.examples.append({"entity": entity, "event_ms": ts,
                                             "online": values.get(name),
                                             "offline": row[name]})
        return True

    for entity in entities:
        served = online.get(entity)
        if served is not None and start_ms <= served[0] < end_ms and not judge(entity, *served):
            continue  # an extra row: not also counted missing
        if entity in latest_offline and (served is None or served[0] < latest_offline[entity]):
            result.missing += 1
            if len(result.missing_examples) < EXAMPLES:
                result.missing_examples.append({
                    "entity": entity, "offline_event_ms": latest_offline[entity],
                    "online_event_ms": None if served is None else served[0]})
    for (entity, ts), values in sorted((written or {}).items()):
        served = online.get(entity)
        if start_ms <= ts < end_ms and (served is None or served[0] != ts):
            judge(entity, ts, values)
    return result, list(features.values())


def consistency_report(store: FeatureStore, start: datetime, end: datetime,
                       pipeline: str = "markets", written: WrittenRows | None = None
                       ) -> ConsistencyReport:
    """The report for the pipeline's views over `[start, end)`; with `written` (the sink's
    write log) over every row the store was written in it (see the module docstring)."""
    if pipeline not in PIPELINE_VIEWS:
        raise ServingError(f"unknown pipeline {pipeline!r} (markets or sensors)")
    views = [v for v in store.list_feature_views()
             if v.name.startswith(PIPELINE_VIEWS[pipeline])]
    if not views:
        raise ServingError(f"no {pipeline} feature views registered: run `feast apply`")
    ensure_delta_extension()
    con = duckdb.connect()
    con.execute("LOAD delta")
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    view_results, feature_results = [], []
    for view in sorted(views, key=lambda v: v.name):
        if not _table_exists(_source(view).path):
            continue
        view_result, features = compare_view(store, view, start_ms, end_ms, con,
                                             (written or {}).get(view.name))
        view_results.append(view_result)
        feature_results.extend(features)
    if not view_results:
        raise ServingError(f"no offline table of the {pipeline} views exists yet")
    return ConsistencyReport(pipeline, start.isoformat(), end.isoformat(), view_results,
                             feature_results)


def _table_exists(path: str) -> bool:
    if "://" in path:
        return True
    from pathlib import Path

    return (Path(path) / "_delta_log").is_dir()


def written_rows(records: list[bytes]) -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
    """The write log's records (`streaming.sinks.online_store.write_log_record` values) as
    `WrittenRows`; a row logged twice (a replay) keeps its last record."""
    out: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for raw in records:
        body = orjson.loads(raw)
        out.setdefault(str(body["view"]), {})[
            (str(body["entity"]), int(body["event_ms"]))] = dict(body["values"])
    return out
