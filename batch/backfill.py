"""The trades backfill: input files -> candles and indicators Delta tables, for a date range.

Stages: read each input file in one task and fold it into partial candles (after the stream's
lateness rule), with its rejected rows and counts; merge partials into candles per pair and
duration; compute indicators per pair and duration (warm-up history from earlier input or from
the table); write the three tables (each one Delta commit replacing exactly the range's
partitions); summarise.

Range semantics: a backfill of `[start, end)` (UTC days) writes exactly the candle and indicator
rows whose window starts in the range, for the given pairs and durations. Their values use every
input trade (a window is computed from all its trades; trades before `start` give history and
stream time), so the same inputs give the same rows whatever range is backfilled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

import pyarrow as pa
import structlog
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from tqdm import tqdm

from batch.arrival_order import ArrivalOrder
from batch.candles_job import candles_frame
from batch.delta_store import (
    DELTA_RS,
    DELTA_SPARK,
    delta_writer,
    empty_commit,
    write_table_counted,
)
from batch.file_results import (
    CANDLE,
    CLOSURE,
    COUNT,
    FILE_RESULT_SCHEMA,
    LATE,
    SPAN,
    FileContext,
    closures_reach_later_files,
    file_contexts,
    file_results_function,
    optimistic_pass_is_exact,
)
from batch.indicators_job import (
    CHUNK_COLUMN,
    IN_CHUNK_COLUMN,
    candle_day_counts,
    chunked_candles,
    indicators_frame,
    month_chunks,
)
from batch.kafka_input import KafkaInput, KafkaRecords, parse_kafka_lines, read_kafka
from batch.object_storage import join
from batch.parquet_spans import footer_contexts
from batch.rejected_rows import REJECTED_PARTITIONS, REJECTED_ROWS_SCHEMA, rejected_rows_frame
from batch.spark_progress import SparkStageBar
from batch.spark_session import require_delta_spark
from batch.table_history import history_before
from batch.table_retention import TableRetention
from batch.trade_files import parse_trade_file
from batch.trade_inputs import InputFiles, input_files
from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS
from features.indicators import INDICATOR_COLUMNS
from features.schemas.candle import CANDLE_ARROW_SCHEMA, INDICATOR_ARROW_SCHEMA
from features.windows import format_duration

log = structlog.get_logger(__name__)

DAY_MS = 86_400_000
TABLE_PARTITIONS = ["pair", "window_ms", "month"]
"""The candle and indicator tables' partitions: one folder per pair, duration and UTC month of
the window start (`month` = `YYYY-MM`). Each row also carries `day`, its UTC date, which a
backfill's replacement selects rows by (`REPLACED_BY_ROW`)."""
UNIQUE_CANDLE_COLUMNS = ("window_start_ms", "window_end_ms", "volume", "vwap")
"""Candle columns whose values hardly repeat in a file (a window's bounds never do): written
without Parquet dictionaries, as are the indicator values, where building them only costs CPU
(open, high, low and close repeat in real trades and keep theirs)."""
REPLACED_BY_ROW = ("day",)
"""Replacement keys that are row columns, not partitions: a range replaces its days' rows
within the month partitions it touches (the rest of those months stays)."""
CANDLES_TABLE = "candles"
INDICATORS_TABLE = "indicators"
REJECTED_TABLE = "rejected_trades"


@dataclass(frozen=True)
class BackfillConfig:
    inputs: list[str]  # files, folders or globs; empty when reading `kafka`
    start: date
    end: date  # exclusive
    pairs: list[str]
    output: str  # folder (local or gs://) holding the three tables
    durations_ms: list[int] = field(default_factory=lambda: [60_000])
    grace_ms: int = 5_000
    arrival: ArrivalOrder = ArrivalOrder.EVENT_TIME
    history_from_table: bool = True
    show_progress: bool = True
    file_reader: str = "auto"  # auto | python | hadoop (see batch.trade_inputs.input_files)
    kafka: KafkaInput | None = None  # a topic range instead of files (`batch.kafka_input`)
    #: a trade whose event time lies more than this ahead of its Kafka timestamp is rejected,
    #: as the stream dead-letters it: must be the stream's `BRAID_MAX_EVENT_TIME_SKEW`
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS
    #: how long the tables keep removed files and old log entries (what reproducing a model
    #: trained on an older version needs): set on every table written (`batch.table_retention`)
    retention: TableRetention = field(default_factory=TableRetention.from_env)

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        if not self.pairs:
            raise ValueError("at least one pair is needed")
        if not self.durations_ms:
            raise ValueError("at least one candle duration is needed")
        if bool(self.inputs) == (self.kafka is not None):
            raise ValueError("give input files or a Kafka topic, not both or neither")
        if self.max_event_time_skew_ms <= 0:
            raise ValueError("the maximum event-time skew must be positive")

    @property
    def start_ms(self) -> int:
        return _day_ms(self.start)

    @property
    def end_ms(self) -> int:
        return _day_ms(self.end)

    @property
    def days(self) -> list[str]:
        count = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).isoformat() for i in range(count)]

    @property
    def months(self) -> list[str]:
        """The `month` partitions (`YYYY-MM`) the range's days fall in."""
        return sorted({day[:7] for day in self.days})

    def table(self, name: str) -> str:
        return join(self.output, name)


@dataclass
class BackfillSummary:
    run_id: str
    trades_read: int = 0
    trades_valid: int = 0
    rejected_rows: int = 0
    rejected_in_range: int = 0
    late_trades: dict[str, int] = field(default_factory=dict)
    candles_written: int = 0
    indicator_rows_written: int = 0
    table_versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


STAGES = ("read", "candles", "indicators", "write candles", "write indicators", "write rejected")
"""Spark evaluates lazily: indicators are computed during "write indicators"."""


def run_backfill(spark: SparkSession, config: BackfillConfig) -> BackfillSummary:
    """Run one backfill; returns what it read, wrote and rejected, and the table versions."""
    if delta_writer(spark, config.output) == DELTA_SPARK:
        require_delta_spark(spark)  # before any work: the writer's jars are missing otherwise
    summary = BackfillSummary(run_id=uuid.uuid4().hex)
    started = time.perf_counter()
    bound = log.bind(run_id=summary.run_id, start=str(config.start), end=str(config.end))
    bound.info("backfill started",
               inputs=config.inputs or [config.kafka.describe() if config.kafka else ""],
               pairs=config.pairs,
               durations=[format_duration(d) for d in config.durations_ms],
               output=config.output, arrival=config.arrival.value)
    progress = SparkStageBar(spark, tqdm(total=len(STAGES), desc="backfill", unit="stage",
                                         disable=not config.show_progress))

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        progress.set_postfix_str(name)
        t0 = time.perf_counter()
        yield
        summary.stage_seconds[name] = round(time.perf_counter() - t0, 3)
        bound.info("stage done", stage=name, seconds=summary.stage_seconds[name])
        progress.update(1)

    persisted: list[DataFrame] = []

    def keep(frame: DataFrame) -> DataFrame:
        persisted.append(frame.persist(StorageLevel.MEMORY_AND_DISK))
        return persisted[-1]

    replace = {
        "pair": list(config.pairs),
        "window_ms": [str(d) for d in config.durations_ms],
        "month": config.months,
        "day": config.days,
    }
    try:
        with stage("read"):
            files: InputFiles | KafkaRecords
            if config.kafka is not None:
                files = read_kafka(spark, config.kafka)  # checked: topic exists, not empty
                persisted.append(files.records)
            else:
                files = input_files(spark, config.inputs, config.file_reader)
            results, facts = _file_results(spark, files, config, keep, bound)
            _summarise_facts(facts, config.durations_ms, summary)

        with stage("candles"):
            # each series' candles per day, at least: those each file aggregated alone (the
            # windows files share are few, and only lengthen a chunk's warm-up)
            own = results.where(F.col("kind") == CANDLE)
            chunks = month_chunks(
                [(pair, size) for pair in config.pairs for size in config.durations_ms],
                candle_day_counts(own, config.end_ms), config.start_ms, config.end_ms,
            )
            # the candles in month chunks with their warm-up copies: one shuffle, whose
            # persisted result both writes read (each table partition lies in one task)
            chunked = keep(chunked_candles(candles_frame(results), chunks))

        with stage("indicators"):
            history = _table_history(config) if config.history_from_table else {}
            indicators = _with_day(
                indicators_frame(chunked, history, config.start_ms, config.end_ms),
                INDICATOR_ARROW_SCHEMA.names,
            )

        with stage("write candles"):
            written = write_table_counted(
                _with_day(chunked.where(F.col(IN_CHUNK_COLUMN)), CANDLE_ARROW_SCHEMA.names),
                config.table(CANDLES_TABLE), partition_by=TABLE_PARTITIONS, replace=replace,
                run_id=summary.run_id, retention=config.retention,
                replaced_by_row=REPLACED_BY_ROW, partitions_in_one_task=True,
                without_dictionary=UNIQUE_CANDLE_COLUMNS,
            )
            summary.table_versions[CANDLES_TABLE] = written.version
            summary.candles_written = written.rows
        with stage("write indicators"):
            written = write_table_counted(
                indicators, config.table(INDICATORS_TABLE), partition_by=TABLE_PARTITIONS,
                replace=replace, run_id=summary.run_id, retention=config.retention,
                replaced_by_row=REPLACED_BY_ROW, partitions_in_one_task=True,
                without_dictionary=("window_start_ms", "window_end_ms", *INDICATOR_COLUMNS),
            )
            summary.table_versions[INDICATORS_TABLE] = written.version
            summary.indicator_rows_written = written.rows
        with stage("write rejected"):
            rejected = rejected_rows_frame(
                results, start_ms=config.start_ms, end_ms=config.end_ms, start=config.start,
                end=config.end, run_id=summary.run_id,
            )
            range_partition = {"range_start": [config.start.isoformat()],
                               "range_end": [config.end.isoformat()]}
            if (summary.rejected_rows == 0
                    and delta_writer(spark, config.table(REJECTED_TABLE)) == DELTA_RS):
                # nothing to write: one commit that only clears the range, no Spark job
                written = empty_commit(
                    config.table(REJECTED_TABLE), REJECTED_ROWS_SCHEMA,
                    partition_by=REJECTED_PARTITIONS, replace=range_partition,
                    run_id=summary.run_id, retention=config.retention,
                )
            else:
                written = write_table_counted(
                    rejected, config.table(REJECTED_TABLE), partition_by=REJECTED_PARTITIONS,
                    replace=range_partition, run_id=summary.run_id,
                    retention=config.retention,
                )
            summary.table_versions[REJECTED_TABLE] = written.version
            summary.rejected_in_range = written.rows
    finally:
        progress.close()
        for frame in persisted:
            frame.unpersist()
    summary.seconds = round(time.perf_counter() - started, 3)
    bound.info("backfill finished", **{k: v for k, v in summary.as_dict().items()
                                       if k != "run_id"})
    return summary


def _file_results(
    spark: SparkSession,
    files: InputFiles | KafkaRecords,
    config: BackfillConfig,
    keep: Callable[[DataFrame], DataFrame],
    log_: structlog.typing.FilteringBoundLogger,
) -> tuple[DataFrame, list[Row]]:
    """Every file's results, in one pass when the files follow each other in time (checked on
    the spans they report), else in a second pass that knows every file's span; with the small
    facts rows (spans, counts, late counts), collected in the same Spark job. Parquet inputs
    in event-time order get the exact pass at once, from the spans their footers give
    (`batch.parquet_spans`): no window is shipped to the shared aggregation unless another
    file's span reaches it."""

    def mapped(contexts: dict[tuple[int, str], FileContext] | None) -> DataFrame:
        return keep(files.map_files(
            spark,
            file_results_function(
                pairs=config.pairs, durations_ms=config.durations_ms, grace_ms=config.grace_ms,
                arrival=config.arrival, contexts=contexts,
                parse=partial(parse_kafka_lines if isinstance(files, KafkaRecords)
                              else parse_trade_file,
                              max_event_time_skew_ms=config.max_event_time_skew_ms),
            ),
            FILE_RESULT_SCHEMA,
        ))

    def facts(results: DataFrame) -> list[Row]:
        return results.where(F.col("kind").isin(SPAN, COUNT, LATE, CLOSURE)).select(
            "kind", "pair", "source_index", "window_ms", "span_min_ms", "span_max_ms",
            "span_first_ms", "rows_valid", "rows_rejected", "rows_late", "timestamp_ms",
        ).collect()

    if len(files.paths) == 1:
        results = mapped({})  # nothing to share, nothing before it
        return results, facts(results)
    known = (footer_contexts(files.paths, config.pairs, config.durations_ms)
             if isinstance(files, InputFiles) and config.arrival is ArrivalOrder.EVENT_TIME
             else None)
    if known is not None:  # Parquet files whose footers give their spans: the exact pass now
        results = mapped(known)
        return results, facts(results)
    results = mapped(None)
    rows = facts(results)
    spans = [
        (int(r["source_index"]), str(r["pair"]), int(r["span_min_ms"]), int(r["span_max_ms"]),
         int(r["span_first_ms"]))
        for r in rows if r["kind"] == SPAN
    ]
    closures = [(int(r["source_index"]), str(r["pair"]), int(r["window_ms"]),
                 int(r["timestamp_ms"])) for r in rows if r["kind"] == CLOSURE]
    reach = closures_reach_later_files(spans, closures, config.arrival)
    if not reach and optimistic_pass_is_exact(spans, config.durations_ms, config.arrival):
        return results, rows
    log_.info("second pass with every file's span" + (
        " and the closure records of earlier files" if reach else
        ": input files overlap in time"))
    results.unpersist()
    results = mapped(file_contexts([s[:4] for s in spans], config.arrival, closures))
    return results, facts(results)


def _summarise_facts(
    rows: list[Row], durations_ms: Sequence[int], summary: BackfillSummary
) -> None:
    """Rows read, valid, rejected, and late per duration, from the files' facts rows."""
    summary.trades_valid = sum(int(r["rows_valid"]) for r in rows if r["kind"] == COUNT)
    summary.rejected_rows = sum(int(r["rows_rejected"]) for r in rows if r["kind"] == COUNT)
    summary.trades_read = summary.trades_valid + summary.rejected_rows
    late: dict[int, int] = {}
    for r in rows:
        if r["kind"] == LATE:
            late[int(r["window_ms"])] = late.get(int(r["window_ms"]), 0) + int(r["rows_late"])
    summary.late_trades = {format_duration(size): late.get(size, 0) for size in durations_ms}


def _with_day(frame: DataFrame, columns: Sequence[str]) -> DataFrame:
    """`columns`, `day` (the UTC date of the window start, a row column) and `month` (its
    `YYYY-MM`, the partition column, which `frame` holds: the chunk of the row)."""
    days = F.floor(F.col("window_start_ms") / F.lit(DAY_MS)).cast("int")
    return frame.select(*columns, F.date_from_unix_date(days).alias("day"), CHUNK_COLUMN)


def _table_history(config: BackfillConfig) -> dict[tuple[str, int], pa.Table]:
    """The last `MAX_WARMUP - 1` candles before `start` per pair and duration, from the table
    (as many earlier days as hold them, however sparse the pair: `batch.table_history`)."""
    return history_before(config.table(CANDLES_TABLE), config.pairs, config.durations_ms,
                          config.start, config.start_ms)


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def parse_day(text: str) -> date:
    """`YYYY-MM-DD` (UTC day)."""
    return date.fromisoformat(text)


def durations_from(texts: Sequence[str]) -> list[int]:
    from features.windows import parse_duration_ms

    return [parse_duration_ms(t) for t in texts]
