"""The offline-store writer: a Spark DataFrame into a partitioned Delta table.

**delta-spark** writes it: `df.write.format("delta")` with `replaceWhere` on the replaced
partitions (one commit), through Hadoop file systems (`file:`, and `gs://` with the GCS
connector). Its jars come from Maven Central (`batch.spark_session`); without them the write
fails with the command that installs them, never silently through another writer.

A write with `replace` removes every file in the given partitions and adds the new ones in one
commit, so re-running a backfill replaces exactly its range. Each commit carries the run id
(`userMetadata`); :func:`write_table` returns the version that commit produced. Every write
carries the retention setting (`batch.table_retention`) as table properties: set when the
write creates the table, and by one `ALTER` commit before the write when the setting changed.

`gs://` tables go through Hadoop's GCS connector (the `gcs` jar bundle locally, the image's on
Dataproc) with Delta's GCS log store: a commit creates the version file only if it is absent (a
GCS precondition), so concurrent writers never both commit one version.

The former writer, a Python data source (`braid_delta`) whose tasks write Parquet and whose
driver commits with delta-rs, is kept only for comparison on local tables
(`bench/bench_backfill.py` measures both in one run): `BRAID_DELTA_WRITER=delta-rs` selects it.
Reading tables without Spark (history lookups, tests, Feast) goes through delta-rs or DuckDB
(`batch.delta_log`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

from batch import delta_log
from batch.object_storage import (
    apply_storage_env,
    filesystem_for,
    is_gcs,
    join,
    normalize_uri,
    storage_env,
)
from batch.spark_session import require_delta_spark
from batch.table_retention import TableRetention

log = structlog.get_logger(__name__)

DATA_SOURCE_NAME = "braid_delta"
DELTA_SPARK = "delta-spark"
DELTA_RS = "delta-rs"
WRITERS = (DELTA_SPARK, DELTA_RS)


def delta_writer(spark: SparkSession | None = None, uri: str | None = None) -> str:
    """The writer to use: `$BRAID_DELTA_WRITER` when set (delta-rs: local tables only), else
    delta-spark."""
    configured = os.environ.get("BRAID_DELTA_WRITER", "").strip()
    if configured:
        if configured not in WRITERS:
            raise ValueError(f"BRAID_DELTA_WRITER={configured!r}: use one of {WRITERS}")
        if configured == DELTA_RS and uri is not None and is_gcs(uri):
            raise ValueError(f"BRAID_DELTA_WRITER=delta-rs writes local tables only, not {uri}")
        return configured
    return DELTA_SPARK


@dataclass
class FilesWritten(WriterCommitMessage):
    """What one Spark task wrote: add-action facts (JSON-friendly dicts)."""

    adds: list[dict[str, Any]] = field(default_factory=list)


class DeltaRsDataSource(DataSource):
    """`df.write.format("braid_delta").option("path", uri)...`: Parquet tasks, one commit.

    Options: `path`, `partition_by` (JSON list), `replace` (JSON object column -> values, or
    absent to append), `run_id`, `properties` (JSON object: table properties to carry).
    """

    @classmethod
    def name(cls) -> str:
        return DATA_SOURCE_NAME

    def writer(self, schema: StructType, overwrite: bool) -> DeltaRsWriter:
        return DeltaRsWriter(dict(self.options), schema)


class DeltaRsWriter(DataSourceArrowWriter):
    def __init__(self, options: dict[str, str], schema: StructType) -> None:
        from pyspark.sql.pandas.types import to_arrow_schema

        self.uri = normalize_uri(options["path"])
        self.partition_by: list[str] = json.loads(options.get("partition_by", "[]"))
        replace = options.get("replace")
        self.replace: dict[str, list[str]] | None = json.loads(replace) if replace else None
        self.replaced_by_row: list[str] = json.loads(options.get("replaced_by_row", "[]"))
        self.run_id = options.get("run_id", uuid.uuid4().hex)
        self.env: dict[str, str] = json.loads(options.get("storage_env", "{}"))
        self.properties: dict[str, str] = json.loads(options.get("properties", "{}"))
        self.arrow_schema = _without_nullability(to_arrow_schema(schema))

    def write(self, iterator: Iterator[pa.RecordBatch]) -> FilesWritten:
        apply_storage_env(self.env)
        batches = list(iterator)
        if not batches:
            return FilesWritten()
        table = pa.Table.from_batches(batches).cast(self.arrow_schema)
        data_columns = [n for n in table.column_names if n not in self.partition_by]
        fs = filesystem_for(self.uri)
        task = uuid.uuid4().hex
        adds: list[dict[str, Any]] = []
        keys = table.select(self.partition_by).group_by(self.partition_by).aggregate([])
        for key in keys.to_pylist():
            mask = None
            for col, value in key.items():
                cond = pc.equal(table[col], pa.scalar(value, table.schema.field(col).type))
                mask = cond if mask is None else pc.and_(mask, cond)
            part = table.filter(mask).select(data_columns) if mask is not None else table
            values = {col: _partition_text(v) for col, v in key.items()}
            folder = "/".join(f"{c}={_escape(values[c])}" for c in self.partition_by)
            relative = f"{folder}/part-{task}-{len(adds):05d}.parquet".lstrip("/")
            target = join(self.uri, relative)
            location = target[len("gs://") :] if is_gcs(target) else target
            if not is_gcs(target):
                fs.makedirs(location.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(location, "wb") as out:
                pq.write_table(part, out, compression="zstd")
            size = fs.size(location)
            adds.append(
                {
                    "path": relative,
                    "size": int(size),
                    "partition_values": values,
                    "modification_time": int(time.time() * 1000),
                    "stats": _stats(part),
                }
            )
        return FilesWritten(adds)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        from deltalake.transaction import AddAction

        apply_storage_env(self.env)
        written = [add for message in messages if isinstance(message, FilesWritten)
                   for add in message.adds]
        replace, kept = self.replace, []
        if replace is not None and self.replaced_by_row:
            # the replaced partitions are removed whole: their rows outside the replaced ones
            # are written again first, and committed with the new files
            kept = self._kept_rows()
            replace = {c: v for c, v in replace.items() if c not in self.replaced_by_row}
        delta_log.commit_files(
            self.uri,
            schema=self.arrow_schema,
            partition_by=self.partition_by,
            adds=[AddAction(data_change=True, **add) for add in written],
            replace=replace,
            run_id=self.run_id,
            properties=self.properties,
            kept=[AddAction(data_change=True, **add) for add in kept],
        )

    def _kept_rows(self) -> list[dict[str, Any]]:
        """The rows of the replaced partitions that the write does not replace (`replace`'s
        row columns select the replaced ones), as new files beside the old ones."""
        assert self.replace is not None
        if not delta_log.table_exists(self.uri):
            return []
        partitions = {c: set(v) for c, v in self.replace.items() if c not in self.replaced_by_row}
        rows = {c: pa.array(v, pa.string()) for c, v in self.replace.items()
                if c in self.replaced_by_row}
        actions = pa.table(delta_log.open_table(self.uri).get_add_actions(flatten=True))
        fs = filesystem_for(self.uri)
        task = uuid.uuid4().hex
        kept: list[dict[str, Any]] = []
        for add in actions.to_pylist():
            values = {c: _partition_text(add[f"partition.{c}"]) for c in self.partition_by}
            if not all(values[c] in wanted for c, wanted in partitions.items()):
                continue
            relative = unquote(add["path"])  # add-action paths are URI-encoded
            source = join(self.uri, relative)
            with fs.open(source[len("gs://"):] if is_gcs(source) else source, "rb") as handle:
                part = pq.read_table(handle)
            replaced = None
            for column, wanted_values in rows.items():
                match = pc.is_in(pc.cast(part[column], pa.string()), wanted_values)
                replaced = match if replaced is None else pc.and_(replaced, match)
            rest = part.filter(pc.invert(replaced)) if replaced is not None else part
            if rest.num_rows == 0:
                continue
            folder = relative.rsplit("/", 1)[0]
            target_relative = f"{folder}/part-{task}-kept-{len(kept):05d}.parquet"
            target = join(self.uri, target_relative)
            location = target[len("gs://"):] if is_gcs(target) else target
            with fs.open(location, "wb") as out:
                pq.write_table(rest, out, compression="zstd")
            kept.append({"path": target_relative, "size": int(fs.size(location)),
                         "partition_values": values,
                         "modification_time": int(time.time() * 1000), "stats": _stats(rest)})
        return kept

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        """Files of a failed write stay unreferenced (no commit): `VACUUM` removes them."""


@dataclass(frozen=True)
class TableWrite:
    version: int  # the table version this write committed
    rows: int  # rows it added


def write_table(
    df: DataFrame,
    uri: str,
    *,
    partition_by: list[str],
    replace: dict[str, list[str]] | None,
    run_id: str,
    retention: TableRetention | None = None,
    replaced_by_row: tuple[str, ...] = (),
    partitions_in_one_task: bool = False,
    without_dictionary: Sequence[str] = (),
) -> int:
    """Write `df` to the Delta table at `uri`; returns the version this write committed."""
    return write_table_counted(
        df, uri, partition_by=partition_by, replace=replace, run_id=run_id, retention=retention,
        replaced_by_row=replaced_by_row, partitions_in_one_task=partitions_in_one_task,
        without_dictionary=without_dictionary,
    ).version


def write_table_counted(
    df: DataFrame,
    uri: str,
    *,
    partition_by: list[str],
    replace: dict[str, list[str]] | None,
    run_id: str,
    retention: TableRetention | None = None,
    replaced_by_row: tuple[str, ...] = (),
    partitions_in_one_task: bool = False,
    without_dictionary: Sequence[str] = (),
) -> TableWrite:
    """Write `df` to the Delta table at `uri` (one commit, and one before it when the table's
    retention properties differ from `retention`: None, `TableRetention.from_env()`); returns
    its version and row count, so callers need no separate count of `df`.

    `replace` maps columns to the values whose rows the write replaces (a conjunction of `IN`
    lists); those named in `replaced_by_row` are row columns, not partitions: within the
    partitions the others select, only the rows matching them are replaced, the others stay.

    Each partition is written as one file: `df` is first repartitioned by `partition_by`,
    unless `partitions_in_one_task` says every partition's rows already lie in one task of
    `df` (a frame hash-partitioned by those columns, or by a prefix of them), which spares a
    shuffle of the whole table.

    Columns in `without_dictionary` are written without Parquet's dictionary encoding (with
    delta-spark): for columns whose values hardly repeat (computed floats), where building the
    dictionary of every file costs CPU and the writer then falls back to plain encoding anyway.
    The files read the same."""
    uri = normalize_uri(uri)
    if partition_by and not partitions_in_one_task:
        df = df.repartition(*partition_by)
    spark = df.sparkSession
    properties = (retention or TableRetention.from_env()).properties()
    if delta_writer(spark, uri) == DELTA_SPARK:
        require_delta_spark(spark)
        with _parquet_dictionary_off(spark, without_dictionary):
            return _write_with_delta_spark(df, uri, partition_by=partition_by, replace=replace,
                                           run_id=run_id, properties=properties)
    _register_once(spark)
    writer = (
        df.write.format(DATA_SOURCE_NAME)
        .mode("append")
        .option("path", uri)
        .option("partition_by", json.dumps(partition_by))
        .option("run_id", run_id)
        .option("storage_env", json.dumps(storage_env()))
        .option("properties", json.dumps(properties))
    )
    if replace is not None:
        writer = writer.option("replace", json.dumps(replace))
        writer = writer.option("replaced_by_row", json.dumps(list(replaced_by_row)))
    writer.save()
    found = delta_log.commit_of_run(uri, run_id)
    if found is None:
        raise RuntimeError(f"no commit of run {run_id} found in {uri}")
    version, rows = found
    log.info("delta table written", table=uri, version=version, rows=rows, engine="delta-rs")
    return TableWrite(version, rows)


def empty_commit(
    uri: str,
    schema: pa.Schema,
    *,
    partition_by: list[str],
    replace: dict[str, list[str]],
    run_id: str,
    retention: TableRetention | None = None,
) -> TableWrite:
    """Replace partitions with nothing (delta-rs writer only, from the driver): what writing an
    empty DataFrame would commit, without a Spark job. Creates the table when absent."""
    version = delta_log.commit_files(
        normalize_uri(uri), schema=_without_nullability(schema), partition_by=partition_by,
        adds=[], replace=replace, run_id=run_id,
        properties=(retention or TableRetention.from_env()).properties(),
    )
    log.info("delta table written", table=uri, version=version, rows=0, engine="delta-rs")
    return TableWrite(version, 0)


_REGISTERED: set[int] = set()


def _register_once(spark: SparkSession) -> None:
    if id(spark) not in _REGISTERED:
        spark.dataSource.register(DeltaRsDataSource)
        _REGISTERED.add(id(spark))


def _write_with_delta_spark(
    df: DataFrame,
    uri: str,
    *,
    partition_by: list[str],
    replace: dict[str, list[str]] | None,
    run_id: str,
    properties: dict[str, str],
) -> TableWrite:
    """`replaceWhere` over the replaced partitions (and rows, for keys that are row columns:
    Delta rewrites the files holding them without them), one commit; its version and rows
    added. `properties` are set as the write creates the table, or first by an `ALTER` commit
    where an existing table holds other values."""
    spark = df.sparkSession
    target = uri if is_gcs(uri) or uri.startswith("file:") else f"file://{uri}"
    _align_properties(spark, target, properties)
    writer = df.write.format("delta").partitionBy(*partition_by).option("userMetadata", run_id)
    for key, value in properties.items():
        writer = writer.option(key, value)  # taken as table properties when it creates it
    if replace is not None and delta_log.table_exists(uri):
        # a predicate on row columns (not only partitions): Delta rewrites the files holding
        # matching rows without them (on by default in Delta; set in case a cluster turned it
        # off). A new table has nothing to replace: Delta would refuse row columns there.
        spark.conf.set("spark.databricks.delta.replaceWhere.dataColumns.enabled", "true")
        writer = writer.mode("overwrite").option("replaceWhere", replace_condition(replace))
    else:
        writer = writer.mode("append")
    writer.save(target)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{target}` LIMIT 50").select(
        "version", "operationMetrics", "userMetadata").collect()
    mine = [c for c in history if c["userMetadata"] == run_id]
    if mine:
        version = int(mine[0]["version"])
        # a commit that added no file (an empty write) reports no numOutputRows
        rows = int((mine[0]["operationMetrics"] or {}).get("numOutputRows", 0))
    else:
        # nothing to remove and nothing to add: delta-spark commits nothing
        version, rows = max(int(c["version"]) for c in history), 0
    log.info("delta table written", table=uri, version=version, rows=rows, engine="delta-spark")
    return TableWrite(version, rows)


@contextmanager
def _parquet_dictionary_off(spark: SparkSession, columns: Sequence[str]) -> Iterator[None]:
    """Parquet writes of this session encode `columns` without a dictionary meanwhile (parquet-mr's
    per-column `parquet.enable.dictionary#<column>`; a session setting reaches the writer's
    Hadoop configuration)."""
    keys = [f"parquet.enable.dictionary#{column}" for column in columns]
    before = {key: spark.conf.get(key, None) for key in keys}
    for key in keys:
        spark.conf.set(key, "false")
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _align_properties(spark: SparkSession, target: str, properties: dict[str, str]) -> None:
    """Give an existing table `properties` (one `ALTER` commit) where it holds other values."""
    from pyspark.errors import AnalysisException

    if not properties:
        return
    try:
        rows = spark.sql(f"SHOW TBLPROPERTIES delta.`{target}`").collect()
    except AnalysisException:  # no table there yet: the write creates it with the properties
        return
    configuration = {str(row["key"]): str(row["value"]) for row in rows}
    changed = {k: v for k, v in properties.items() if configuration.get(k) != v}
    if changed:
        settings = ", ".join(f"'{k}' = {_sql_literal(v)}" for k, v in changed.items())
        spark.sql(f"ALTER TABLE delta.`{target}` SET TBLPROPERTIES ({settings})")
        log.info("delta table properties set", table=target, properties=changed)


def replace_condition(replace: dict[str, list[str]]) -> str:
    """The `replaceWhere` predicate: a conjunction of `IN` lists on partition columns."""
    return " AND ".join(
        f"`{col}` IN ({', '.join(_sql_literal(v) for v in values)})" if values else "false"
        for col, values in replace.items()
    ) or "true"


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _partition_text(value: object) -> str:
    """A partition value as Delta stores it (dates ISO, ints decimal)."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _escape(text: str) -> str:
    """Hive-style escaping of a partition value in a folder name (`/` -> `%2F`)."""
    from urllib.parse import quote

    return quote(text, safe="-_.")


def _without_nullability(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def _stats(table: pa.Table) -> str:
    """Delta file statistics: row count, and min/max/null count of integer and string columns."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name in table.column_names:
        column = table[name]
        nulls[name] = column.null_count
        if table.num_rows and (pa.types.is_integer(column.type) or pa.types.is_string(column.type)):
            bounds = pc.min_max(column).as_py()
            mins[name], maxs[name] = bounds["min"], bounds["max"]
    return json.dumps(
        {"numRecords": table.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    )
