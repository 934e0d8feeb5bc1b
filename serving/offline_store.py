"""Feast's DuckDB offline store, reading Braid's Delta tables as they are written.

Braid's tables hold epoch-millisecond times and several candle durations in one table
(`features/schemas/candle.py`); Feast wants one event-timestamp column per source. A Braid
source is an ordinary `FileSource(..., file_format=DeltaFormat())` whose tags say how to read it:

- `braid.timestamp_ms`: the epoch-ms column whose instant is the row's event timestamp (exposed
  as `event_timestamp`, UTC);
- `braid.window_ms` (optional): keep only the rows of this candle duration (a partition column,
  so DuckDB reads only that duration's files);
- `braid.sensor` (optional): keep only the rows of this sensor (`sensor_readings` holds SX and
  SY readings, partitioned by `sensor`).

`source_filters` gives these conditions to every reader of the tables (training sets, the
consistency report).

Materialization (`feast materialize`, `materialize_incremental`) reads a source whose Delta table
does not exist yet (nothing backfilled there) as no rows, with a warning naming the table, so
the other views still materialize; a training set or any other read of a missing table is an
error (`NoOfflineTableError`). Feast still records the skipped view's interval as
materialized, so `materialize_incremental` would later start after it: once its table is first
backfilled, load that view with `feast materialize START END --views VIEW` (the `materialize`
flow passes only views whose table exists, so its runs are not affected). Everything else
(point-in-time joins, retrieval jobs) is Feast's
DuckDB store unchanged. Select it in `feature_store.yaml` with
`offline_store: {type: serving.offline_store.BraidDuckDBOfflineStore}`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import pandas as pd
import pyarrow as pa
import structlog
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores import duckdb as feast_duckdb
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.ibis import (
    get_historical_features_ibis,
    pull_all_from_table_or_query_ibis,
    pull_latest_from_table_or_query_ibis,
)
from feast.infra.offline_stores.offline_store import RetrievalJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig
from ibis.expr.types import Table
from pydantic import StrictStr

from serving.duckdb_delta import configure_gcs, ensure_delta_extension

log = structlog.get_logger(__name__)

# ibis 12's DuckDB backend calls DuckDB 1.5's deprecated `fetch_arrow_table()` on every read
# (Feast's materialization, retrieval jobs): nothing Braid can change, and harmless until DuckDB
# removes the method, so its warning is not shown to users. Drop this once ibis stops calling it.
warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated",
                        category=DeprecationWarning, module=r"ibis\.backends\.duckdb")

TIMESTAMP_MS_TAG = "braid.timestamp_ms"
WINDOW_MS_TAG = "braid.window_ms"
SENSOR_TAG = "braid.sensor"
EVENT_TIMESTAMP = "event_timestamp"


class NoOfflineTableError(FileNotFoundError):
    """A feature view's Delta table does not exist (nothing was backfilled there yet)."""


def source_filters(source: DataSource) -> list[tuple[str, int | str]]:
    """(column, value) equalities a Braid source's rows must meet, from its tags."""
    filters: list[tuple[str, int | str]] = []
    if WINDOW_MS_TAG in source.tags:
        filters.append(("window_ms", int(source.tags[WINDOW_MS_TAG])))
    if SENSOR_TAG in source.tags:
        filters.append(("sensor", source.tags[SENSOR_TAG]))
    return filters


def read_source(data_source: DataSource, repo_path: str) -> Table:
    """An ibis table over `data_source`: Braid's tagged Delta sources, else Feast's own reader."""
    if not isinstance(data_source, FileSource) or TIMESTAMP_MS_TAG not in data_source.tags:
        return feast_duckdb._read_data_source(data_source, repo_path)
    ensure_delta_extension()
    path = data_source.path
    if "://" not in path:
        from pathlib import Path

        if not (Path(path) / "_delta_log").is_dir():
            raise NoOfflineTableError(
                f"offline table {path} does not exist (run the backfill that writes it)")
    elif path.startswith("gs://"):
        configure_gcs(ibis.get_backend().con)
    table = ibis.read_delta(path)
    for column, value in source_filters(data_source):
        table = table.filter(table[column] == value)
    millis = table[data_source.tags[TIMESTAMP_MS_TAG]]
    return table.mutate(
        **{EVENT_TIMESTAMP: millis.as_timestamp("ms").cast(dt.Timestamp(timezone="UTC"))})


def _missing_as_empty(join_keys: list[str], features: list[str], timestamp_field: str,
                      created_timestamp_column: str | None) -> Callable[[DataSource, str], Table]:
    """:func:`read_source`, but a table that does not exist yet reads as no rows (with a
    warning naming it): materializing every view must not fail on one whose backfill has not
    run."""
    timestamps = [timestamp_field, *filter(None, [created_timestamp_column])]

    def reader(data_source: DataSource, repo_path: str) -> Table:
        try:
            return read_source(data_source, repo_path)
        except NoOfflineTableError as error:
            log.warning("offline table missing: its views are skipped", source=data_source.name,
                        reason=str(error))
            empty = pa.table({
                **{name: pa.array([], pa.string()) for name in join_keys},
                **{name: pa.array([], pa.float64()) for name in features},
                **{name: pa.array([], pa.timestamp("us", tz="UTC")) for name in timestamps}})
            return ibis.memtable(empty)
    return reader


def _ibis_io(config: RepoConfig, reader: Callable[[DataSource, str], Table] = read_source
             ) -> dict[str, Any]:
    """How Feast's ibis functions read Braid's sources and write staging data (shared by every
    retrieval method below)."""
    return {
        "data_source_reader": reader,
        "data_source_writer": feast_duckdb._write_data_source,
        "staging_location": config.offline_store.staging_location,
        "staging_location_endpoint_override":
            config.offline_store.staging_location_endpoint_override,
    }


class BraidDuckDBOfflineStoreConfig(feast_duckdb.DuckDBOfflineStoreConfig):
    """The DuckDB store's settings (`staging_location`, ...) under Braid's type name."""

    type: StrictStr = "serving.offline_store.BraidDuckDBOfflineStore"


class BraidDuckDBOfflineStore(feast_duckdb.DuckDBOfflineStore):
    """`DuckDBOfflineStore` whose reads go through :func:`read_source`."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        return pull_latest_from_table_or_query_ibis(
            config=config, data_source=data_source, join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns, timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column, start_date=start_date,
            end_date=end_date,
            **_ibis_io(config, _missing_as_empty(join_key_columns, feature_name_columns,
                                                 timestamp_field, created_timestamp_column)),
        )

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        return get_historical_features_ibis(
            config=config, feature_views=feature_views, feature_refs=feature_refs,
            entity_df=entity_df, registry=registry, project=project,
            full_feature_names=full_feature_names, **_ibis_io(config),
            filter_by_created_timestamp=filter_by_created_timestamp,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        return pull_all_from_table_or_query_ibis(
            config=config, data_source=data_source, join_key_columns=join_key_columns,
            feature_name_columns=feature_name_columns, timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column, start_date=start_date,
            end_date=end_date,
            **_ibis_io(config, _missing_as_empty(join_key_columns, feature_name_columns,
                                                 timestamp_field, created_timestamp_column)),
        )


