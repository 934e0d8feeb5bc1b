"""spark-submit entry: recompute FA, FI, FD from the sensors Parquet archive into the offline store.

    spark-submit batch/sensors_backfill.py --input gs://bucket/archive \
        --output var/offline/sensor_features [--start 2026-01-01 --end 2026-01-02] \
        [--grace 5s] [--edges edges.json] [--topic-prefix p.] \
        [--readings-output var/offline/sensor_readings] \
        [--vectors-output var/offline/sensor_vectors] [--max-event-time-skew 1h] \
        [--max-lateness 2h]

Reads the archive the streaming sink writes (`streaming.sinks.gcs_parquet_archive`: objects
`<root>/topic=<SZ topic>/date=<day>/part-<partition>-<first>-<last>.parquet`, local or `gs://`,
through `batch.trade_inputs.read_file_bytes`: Hadoop on Dataproc, fsspec elsewhere), then per
topic-partition (the lateness rule looks at every client of a partition), with the same
`features/` code as the stream:

1. drops readings the stream rejected as invalid (`features.sensors.schemas` rules), and those
   stamped more than the maximum event-time skew ahead of their Kafka timestamp, which the
   archive keeps (`features.event_time`: the stream dead-letters them; use the stream's value);
2. replays the stream's lateness rule (`features.windows.sliding_lateness`: grace behind the
   client's stream time, or the max lateness behind the partition's) in the stream's arrival
   order, which the archive keeps as (partition, offset): a client lives on one partition;
3. computes FA, FI, FD (`features.sensors.window_math`) and bins them with the same versioned
   edges (`features.sensors.binning`).

Rows are written to a Delta table partitioned by `date` (UTC date of the SZ reading); a run
replaces exactly the dates it covers. The archived SX and SY readings the stream accepted (the
same rules) go to a second table, `sensor_readings` beside it unless `--readings-output` says
otherwise (`READINGS_TABLE_SCHEMA`: client, timestamp_ms, sensor, the category in the column
named after the sensor; partitioned by sensor and date; one row per client, sensor and time, the
first to arrive): the offline source of Feast's `sensor_sx` and `sensor_sy` views.

A third table, `sensor_vectors` beside it unless `--vectors-output` says otherwise
(`VECTORS_OUTPUT_SCHEMA`, partitioned by date), holds the vector of every event the stream's
join predicts on, by the rule of `features.sensors.vectors` (the join and the training rows use
the same function):

    The vector of an event of client c at event time t (an SX, SY or SZ reading) is c's SX and
    SY as of t (the reading with the latest event time at or before t, the largest value at a
    tie) and the FA, FI, FD bins of the 10-minute window ending at c's latest SZ reading at or
    before t, counting only readings not late (per topic, in log order: late is grace or more
    behind the client's stream time, or the max lateness or more behind the partition's).

The stream decides everything by event time and each topic's log order (no wall clock: its
window processor emits at once and corrects within grace), so the archive in (partition,
offset) order gives the same features and vectors as the stream's final ones, value for value.

With --start/--end (end exclusive) the days before and after are read as context (a window
reaches 10 minutes back; lateness looks at neighbours in arrival order); an event whose SX, SY
or latest SZ reading lies before that context gets no vector here: widen the range.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    try:
        import batch.trade_inputs  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

from features.event_time import (
    DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    NO_INGESTION_TIME,
    ahead_of_ingestion,
)
from features.sensors.binning import DEFAULT_EDGES, BinEdges, BinRange
from features.sensors.schemas import (
    CATEGORICAL_SENSORS,
    FEATURE_TABLE_SCHEMA,
    FEATURES,
    SENSORS,
    invalid_reading_reasons,
)
from features.sensors.vectors import VECTOR_TABLE_SCHEMA, event_vectors, vector_table
from features.sensors.window_math import (
    DEFAULT_MAX_LATENESS_MS,
    sensor_window,
    sort_readings,
    window_features,
)
from features.windows import (
    NO_STREAM_TIME,
    SlidingWindow,
    format_duration,
    parse_duration_ms,
    sliding_late_mask,
)

log = structlog.get_logger(__name__)

READINGS_SCHEMA = pa.schema([
    pa.field("client", pa.string(), nullable=False),
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
])
OUTPUT_SCHEMA = FEATURE_TABLE_SCHEMA.append(pa.field("date", pa.string(), nullable=False))
READINGS_TABLE_SCHEMA = pa.schema([
    pa.field("client", pa.string(), nullable=False),
    pa.field("timestamp_ms", pa.int64(), nullable=False),
    pa.field("sensor", pa.string(), nullable=False),
    *(pa.field(name, pa.int64()) for name in CATEGORICAL_SENSORS),
    pa.field("date", pa.string(), nullable=False),
])
SENSOR_READINGS_SCHEMA = READINGS_SCHEMA.append(pa.field("sensor", pa.string(), nullable=False))
VECTORS_OUTPUT_SCHEMA = VECTOR_TABLE_SCHEMA.append(pa.field("date", pa.string(), nullable=False))
_ARRIVED_SCHEMA = pa.schema([pa.field("partition", pa.int32(), nullable=False),
                             pa.field("offset", pa.int64(), nullable=False),
                             *READINGS_TABLE_SCHEMA])


def valid_readings(archived: pa.Table, sensor: str = "SZ",
                   max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS) -> pa.Table:
    """The archived rows of `sensor` the stream accepted as readings (:data:`READINGS_SCHEMA`):
    valid by `features.sensors.schemas`, and not stamped more than `max_event_time_skew_ms`
    ahead of their Kafka timestamp (an archive without that column, or a null one, cannot tell:
    the rule does not apply, as in the stream when the broker gives no timestamp)."""
    def filled(name: str, value: object) -> np.ndarray:
        return pc.fill_null(archived[name], value).to_numpy(zero_copy_only=False)

    client_length = pc.fill_null(pc.utf8_length(archived["client"]), 0).to_numpy()
    has_bar = pc.fill_null(pc.match_substring(archived["client"], "|"), False).to_numpy(
        zero_copy_only=False)
    reasons = invalid_reading_reasons(
        sensor, filled("v", -1), client_length, has_bar,
        filled("timestamp_ms", 0), filled("value", np.nan))
    ok = reasons == None  # noqa: E711 - elementwise
    if "kafka_timestamp_ms" in archived.column_names:
        ok &= ~ahead_of_ingestion(filled("timestamp_ms", 0),
                                  filled("kafka_timestamp_ms", NO_INGESTION_TIME),
                                  max_event_time_skew_ms)
    return archived.filter(pa.array(ok)).select(READINGS_SCHEMA.names).cast(READINGS_SCHEMA)


def partition_features(readings: pa.Table, window: SlidingWindow,
                       edges: BinEdges) -> pa.Table:
    """The feature rows (:data:`OUTPUT_SCHEMA`) of the valid archived readings of one
    topic-partition (or several: the rule is per partition), sorted by (client, event time)."""
    arrival = np.lexsort((readings["offset"].to_numpy(), readings["partition"].to_numpy()))
    readings = readings.take(arrival)
    names, codes = np.unique(np.asarray(readings["client"].to_pylist(), dtype=object),
                             return_inverse=True)
    codes = codes.astype(np.int64)
    partitions = readings["partition"].to_numpy().astype(np.int64)
    ts = readings["timestamp_ms"].to_numpy()
    values = readings["value"].to_numpy()
    top = int(partitions.max()) + 1 if len(partitions) else 1
    late = sliding_late_mask(window, codes, ts, np.full(len(names), NO_STREAM_TIME),
                             partitions, np.full(top, NO_STREAM_TIME, dtype=np.int64))
    ts, values, codes = ts[~late], values[~late], codes[~late]
    order = sort_readings(codes, ts, values)
    ts, values, codes = ts[order], values[order], codes[order]
    feats = window_features(codes, ts, values, window_ms=window.size_ms)
    columns = {"FA": feats.fa, "FI": feats.fi, "FD": feats.fd}
    n = len(ts)
    days = ts.astype("datetime64[ms]").astype("datetime64[D]").astype(str)
    return pa.table({
        "client": pa.array(names[codes].tolist(), pa.string()),
        "timestamp_ms": pa.array(ts, pa.int64()),
        "window_ms": pa.array(np.full(n, window.size_ms), pa.int64()),
        "count": pa.array(feats.count, pa.int64()),
        **{name: pa.array(columns[name], pa.float64()) for name in FEATURES},
        **{f"{name}_bin": pa.array(edges.bin(name, columns[name]), pa.int64())
           for name in FEATURES},
        "edges_version": pa.array([edges.version] * n, pa.string()),
        "date": pa.array(days, pa.string()),
    }, schema=OUTPUT_SCHEMA)


def partition_vectors(readings: pa.Table, grace_ms: int, edges: BinEdges,
                      max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS) -> pa.Table:
    """The event vectors (:data:`VECTORS_OUTPUT_SCHEMA`) of the valid archived SX, SY and SZ
    readings (:data:`SENSOR_READINGS_SCHEMA`) of one partition number (the five topics are
    co-partitioned), each topic in its log order (the archive's (partition, offset))."""
    arrival = np.lexsort((readings["offset"].to_numpy(), readings["partition"].to_numpy()))
    rows = vector_table(event_vectors(readings.take(arrival), edges, grace_ms,
                                      max_lateness_ms=max_lateness_ms))
    days = rows["timestamp_ms"].to_numpy().astype("datetime64[ms]").astype(
        "datetime64[D]").astype(str)
    return rows.append_column(VECTORS_OUTPUT_SCHEMA.field("date"), pa.array(days, pa.string()))


def _vectors_of_group(grace_ms: int, edges: BinEdges, max_lateness_ms: int,
                      days: set[str] | None) -> Callable[[pa.Table], pa.Table]:
    def run(readings: pa.Table) -> pa.Table:
        out = partition_vectors(readings, grace_ms, edges, max_lateness_ms)
        if days is not None:
            out = out.filter(pc.is_in(out["date"], pa.array(sorted(days))))
        return out
    return run


def _parse_sensor_files(sensor: str, max_event_time_skew_ms: int) -> Callable[
        [Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """`mapInArrow`: archive objects of `sensor` -> its valid readings, with a sensor column."""
    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for content in batch.column("content").to_pylist():
                table = valid_readings(pq.read_table(io.BytesIO(content)), sensor,
                                       max_event_time_skew_ms)
                table = table.append_column(SENSOR_READINGS_SCHEMA.field("sensor"),
                                            pa.array([sensor] * table.num_rows, pa.string()))
                yield from table.to_batches()
    return parse


def _parse_files(max_event_time_skew_ms: int) -> Callable[[Iterator[pa.RecordBatch]],
                                                          Iterator[pa.RecordBatch]]:
    """`mapInArrow`: archive objects (file bytes rows) -> valid SZ readings."""
    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for content in batch.column("content").to_pylist():
                table = valid_readings(pq.read_table(io.BytesIO(content)), "SZ",
                                       max_event_time_skew_ms)
                yield from table.to_batches()
    return parse


def category_rows(sensor: str, archived: pa.Table,
                  max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS) -> pa.Table:
    """The valid archived readings of categorical `sensor` as rows of the readings table, with
    their arrival (partition, offset) first (:data:`_ARRIVED_SCHEMA`)."""
    valid = valid_readings(archived, sensor, max_event_time_skew_ms)
    n = valid.num_rows
    category = pc.cast(valid["value"], pa.int64())
    days = valid["timestamp_ms"].to_numpy().astype("datetime64[ms]").astype(
        "datetime64[D]").astype(str)
    return pa.table({
        "partition": valid["partition"], "offset": valid["offset"], "client": valid["client"],
        "timestamp_ms": valid["timestamp_ms"], "sensor": pa.array([sensor] * n, pa.string()),
        **{name: category if name == sensor else pa.nulls(n, pa.int64())
           for name in CATEGORICAL_SENSORS},
        "date": pa.array(days, pa.string()),
    }, schema=_ARRIVED_SCHEMA)


def _parse_category_files(sensor: str, max_event_time_skew_ms: int) -> Callable[
        [Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for content in batch.column("content").to_pylist():
                yield from category_rows(sensor, pq.read_table(io.BytesIO(content)),
                                         max_event_time_skew_ms).to_batches()
    return parse


def _features_of_group(window: SlidingWindow, edges: BinEdges,
                       days: set[str] | None) -> Callable[[pa.Table], pa.Table]:
    def run(readings: pa.Table) -> pa.Table:
        out = partition_features(readings, window, edges)
        if days is not None:
            out = out.filter(pc.is_in(out["date"], pa.array(sorted(days))))
        return out
    return run


def archive_files(root: str, topic: str, days: list[str] | None) -> list[str]:
    """Archive objects of `topic` (for `days`, if given) under `root`."""
    from batch.object_storage import expand_paths, join, normalize_uri

    pattern = join(normalize_uri(root), f"topic={topic}", "date=*", "part-*.parquet")
    try:
        files = expand_paths([pattern])
    except FileNotFoundError:
        return []
    if days is None:
        return files
    wanted = {f"date={d}" for d in days}
    return [f for f in files if f.rsplit("/", 2)[-2] in wanted]


def _archived(spark: SparkSession, archive_root: str, sensors: Iterable[str],
              read_days: list[str] | None, topic_prefix: str,
              parser: Callable[[str], Callable[[Iterator[pa.RecordBatch]],
                                               Iterator[pa.RecordBatch]]],
              schema: pa.Schema) -> DataFrame | None:
    """The archived readings of `sensors` (for `read_days`), each topic's files parsed by
    `parser(sensor)` into `schema`, as one frame; None when none is archived."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from batch.trade_inputs import read_file_bytes

    frames = [read_file_bytes(spark, files).mapInArrow(parser(sensor), from_arrow_schema(schema))
              for sensor in sensors
              if (files := archive_files(archive_root, f"{topic_prefix}{sensor}", read_days))]
    if not frames:
        return None
    rows = frames[0]
    for frame in frames[1:]:
        rows = rows.unionByName(frame)
    return rows


def _days(start: date, end: date) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days)]


def run_backfill(
    archive_root: str,
    output: str,
    *,
    start: str | None = None,
    end: str | None = None,
    grace_ms: int = 5_000,
    edges_path: str | None = None,
    topic_prefix: str = "",
    master: str | None = None,
    learn_edges_to: str | None = None,
    learned_version: str | None = None,
    readings_output: str | None = None,
    vectors_output: str | None = None,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS,
) -> int:
    """Recompute the sensor features of [start, end) (all dates if not given) from the archive
    and write them to the Delta table `output`; returns the committed table version.

    With `learn_edges_to`, also learns bin edges from the recomputed raw FA, FI, FD
    (:func:`learn_edges_from`) and saves them there as version `learned_version`, for the
    stream (`braid sensors windows --edges`) and the next backfill (`--edges`).

    The SX and SY readings go to `readings_output` (default: `sensor_readings` beside
    `output`), the same dates replaced (:func:`write_readings`); the events' vectors to
    `vectors_output` (default: `sensor_vectors` beside it; :func:`write_vectors`).

    `max_event_time_skew_ms` must be the stream's (`BRAID_MAX_EVENT_TIME_SKEW`): readings
    stamped further ahead of their Kafka timestamp are dropped, as the stream dead-letters them;
    `max_lateness_ms` must be the stream's too (`BRAID_SENSORS_MAX_LATENESS`)."""
    if max_event_time_skew_ms <= 0:
        raise ValueError("the maximum event-time skew must be positive")
    from pyspark.sql.pandas.types import from_arrow_schema

    from batch.delta_store import write_table
    from batch.spark_session import spark_session
    from batch.trade_inputs import read_file_bytes

    edges = BinEdges.load(Path(edges_path)) if edges_path else DEFAULT_EDGES
    window = sensor_window(grace_ms, max_lateness_ms)
    days = None
    read_days = None
    if start or end:
        if not (start and end):
            raise ValueError("give both --start and --end, or neither")
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        if last <= first:
            raise ValueError(f"end {end} must be after start {start}")
        days = _days(first, last)
        read_days = _days(first - timedelta(days=1), last + timedelta(days=1))
    files = archive_files(archive_root, f"{topic_prefix}SZ", read_days)
    if not files:
        raise FileNotFoundError(f"no archived SZ objects under {archive_root}")
    spark = spark_session("braid-sensors-backfill", master=master)
    run_id = uuid.uuid4().hex
    readings = read_file_bytes(spark, files).mapInArrow(
        _parse_files(max_event_time_skew_ms), from_arrow_schema(READINGS_SCHEMA))
    features = readings.groupBy("partition").applyInArrow(
        _features_of_group(window, edges, set(days) if days else None),
        from_arrow_schema(OUTPUT_SCHEMA)).persist()
    written = days or sorted(r["date"] for r in features.select("date").distinct().collect())
    version = write_table(features, output, partition_by=["date"], replace={"date": written},
                          run_id=run_id)
    log.info("sensor features backfilled", output=output, version=version, days=len(written),
             files=len(files), run_id=run_id)
    if learn_edges_to:
        learned = learn_edges_from(features, learned_version or f"learned-{run_id[:10]}")
        learned.save(Path(learn_edges_to))
        log.info("bin edges learned", path=learn_edges_to, version=learned.version)
    features.unpersist()
    write_readings(spark, archive_root, readings_output or sibling_table(output, "sensor_readings"),
                   read_days=read_days, days=days, topic_prefix=topic_prefix, run_id=run_id,
                   max_event_time_skew_ms=max_event_time_skew_ms)
    write_vectors(spark, archive_root, vectors_output or sibling_table(output, "sensor_vectors"),
                  read_days=read_days, days=days, topic_prefix=topic_prefix, run_id=run_id,
                  grace_ms=grace_ms, edges=edges, max_event_time_skew_ms=max_event_time_skew_ms,
                  max_lateness_ms=max_lateness_ms)
    return version


def sibling_table(uri: str, name: str) -> str:
    """The table `name` in the same folder as the table at `uri`."""
    return f"{uri.rstrip('/').rsplit('/', 1)[0]}/{name}"


def write_readings(spark: SparkSession, archive_root: str, output: str, *,
                   read_days: list[str] | None, days: list[str] | None, topic_prefix: str,
                   run_id: str,
                   max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS) -> int | None:
    """Write the archived SX and SY readings of `days` (all if None) to the Delta table
    `output`, replacing those dates; returns its version (None: no SX or SY archived)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from batch.delta_store import write_table

    rows = _archived(spark, archive_root, CATEGORICAL_SENSORS, read_days, topic_prefix,
                     lambda sensor: _parse_category_files(sensor, max_event_time_skew_ms),
                     _ARRIVED_SCHEMA)
    if rows is None:
        log.warning("no archived SX or SY readings: sensor readings not written",
                    archive=archive_root)
        return None
    # the same (client, sensor, time) twice: the first to arrive (the online store keeps it)
    first = Window.partitionBy("client", "sensor", "timestamp_ms").orderBy("partition", "offset")
    readings = (rows.withColumn("arrival", F.row_number().over(first))
                .filter(F.col("arrival") == 1).select(*READINGS_TABLE_SCHEMA.names))
    if days is not None:
        readings = readings.filter(F.col("date").isin(days))
    readings = readings.persist()
    written = days or sorted(r["date"] for r in readings.select("date").distinct().collect())
    version = write_table(readings, output, partition_by=["sensor", "date"],
                          replace={"date": written}, run_id=run_id)
    log.info("sensor readings backfilled", output=output, version=version, days=len(written))
    readings.unpersist()
    return version


def write_vectors(spark: SparkSession, archive_root: str, output: str, *,
                  read_days: list[str] | None, days: list[str] | None, topic_prefix: str,
                  run_id: str, grace_ms: int, edges: BinEdges,
                  max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
                  max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS) -> int | None:
    """Write the vector of every event of `days` (all if None) to the Delta table `output`,
    replacing those dates; returns its version (None: nothing archived)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from batch.delta_store import write_table

    readings = _archived(spark, archive_root, SENSORS, read_days, topic_prefix,
                         lambda sensor: _parse_sensor_files(sensor, max_event_time_skew_ms),
                         SENSOR_READINGS_SCHEMA)
    if readings is None:
        log.warning("no archived readings: sensor vectors not written", archive=archive_root)
        return None
    vectors = readings.groupBy("partition").applyInArrow(
        _vectors_of_group(grace_ms, edges, max_lateness_ms, set(days) if days else None),
        from_arrow_schema(VECTORS_OUTPUT_SCHEMA)).persist()
    written = days or sorted(r["date"] for r in vectors.select("date").distinct().collect())
    version = write_table(vectors, output, partition_by=["date"], replace={"date": written},
                          run_id=run_id)
    log.info("sensor vectors backfilled", output=output, version=version, days=len(written))
    vectors.unpersist()
    return version


def learn_edges_from(features: DataFrame, version: str, tail: float = 0.005) -> BinEdges:
    """Uniform bin ranges between the `tail` and `1 - tail` quantiles of the raw FA, FI, FD of
    a backfill (Spark's exact `percentile`, linear interpolation like
    `features.sensors.binning.learn_edges`)."""
    from pyspark.sql import functions as F

    row = features.select(*(
        F.percentile(F.col(name), F.array(F.lit(tail), F.lit(1 - tail))).alias(name)
        for name in FEATURES)).first()
    if row is None or any(row[name] is None for name in FEATURES):
        raise ValueError("no feature values to learn bin edges from")
    ranges = {}
    for name in FEATURES:
        low, high = (float(x) for x in row[name])
        ranges[name] = BinRange(low, high if high > low else low + 1.0)
    return BinEdges(version, ranges)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sensors_backfill.py", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--input", required=True, help="archive root (local or gs://)")
    parser.add_argument("--output", required=True, help="Delta table (local or gs://)")
    parser.add_argument("--start", help="first UTC day, YYYY-MM-DD (inclusive)")
    parser.add_argument("--end", help="day after the last, YYYY-MM-DD (exclusive)")
    parser.add_argument("--grace", default="5s", help="the stream's grace (5s)")
    parser.add_argument("--edges", help="bin edges JSON (default: configured edges)")
    parser.add_argument("--topic-prefix", default="", help="prefix of the archived topics")
    parser.add_argument("--master", default=None, help="Spark master if spark-submit set none")
    parser.add_argument("--learn-edges", default=None,
                        help="also learn bin edges from the recomputed features; JSON path")
    parser.add_argument("--edges-version", default=None, help="version of the learned edges")
    parser.add_argument("--readings-output", default=None,
                        help="Delta table of the SX/SY readings (default: sensor_readings "
                             "beside --output)")
    parser.add_argument("--vectors-output", default=None,
                        help="Delta table of the events' vectors (default: sensor_vectors "
                             "beside --output)")
    parser.add_argument("--max-event-time-skew",
                        default=os.environ.get("BRAID_MAX_EVENT_TIME_SKEW", "1h"),
                        help="a reading stamped more than this ahead of its Kafka timestamp is "
                        "dropped, as the stream dead-letters it; use the stream's value "
                        "(default: $BRAID_MAX_EVENT_TIME_SKEW, else 1h)")
    parser.add_argument("--max-lateness",
                        default=os.environ.get("BRAID_SENSORS_MAX_LATENESS",
                                               format_duration(DEFAULT_MAX_LATENESS_MS)),
                        help="a reading this far or further behind its topic-partition's stream "
                        "time is late, as in the stream; use the stream's value "
                        "(default: $BRAID_SENSORS_MAX_LATENESS, else 2h)")
    args = parser.parse_args(argv)
    grace = 0 if args.grace in ("0", "0s") else parse_duration_ms(args.grace)
    version = run_backfill(args.input, args.output, start=args.start, end=args.end,
                           grace_ms=grace, edges_path=args.edges,
                           topic_prefix=args.topic_prefix, master=args.master,
                           learn_edges_to=args.learn_edges, learned_version=args.edges_version,
                           readings_output=args.readings_output,
                           vectors_output=args.vectors_output,
                           max_event_time_skew_ms=parse_duration_ms(args.max_event_time_skew),
                           max_lateness_ms=parse_duration_ms(args.max_lateness))
    print(json.dumps({"output": args.output, "version": version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
