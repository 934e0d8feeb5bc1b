"""The trades backfill's command line: the one definition of its options.

    spark-submit --properties-file var/jars/spark.properties batch/backfill_trades.py \
        --input ../shared/data/kraken-trades/XBTUSD_*.csv \
        --start 2018-05-08 --end 2018-05-23 --pairs XBT/USD --output var/offline
    braid batch backfill --input ... --start 2018-05-08 --end 2018-05-23 --pairs XBT/USD ...

`braid batch backfill` hands its arguments to :func:`main` unchanged, so both take the same
options with the same names (`--pairs`, or `--pair` / `-p` repeated; `--durations`, or
`--duration` / `-d`; `--input` / `-i`). Programs that start the job (the Prefect flow, the demo,
Dataproc submissions) build its arguments with :func:`job_args` and parse them with
:func:`build_parser`: nothing else defines a backfill option.

Runs locally (`local[*]` unless spark-submit set a master), on a standalone cluster (`--master
spark://...`) and unchanged on Dataproc, where the Braid modules arrive as a `--py-files` zip of
`features/` and `batch/` (see `batch.dataproc`). Prints the run summary as one JSON line on
stdout. Bad input (a date, a reversed range, a duration) ends with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

if __package__ in (None, ""):
    # `spark-submit batch/backfill_trades.py` puts batch/ first on sys.path; Braid's packages
    # live one level up (locally) or in the --py-files zip (already on sys.path).
    try:
        import batch.backfill  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datetime import date

from batch.arrival_order import ArrivalOrder
from batch.backfill import BackfillConfig, durations_from, parse_day, run_backfill
from batch.table_retention import RetentionSettings, TableRetention

DEFAULT_DURATIONS = ("1m",)


class _OneLineErrors(argparse.ArgumentParser):
    """Bad input: one line naming it (`<prog>: error: ...`, see `--help`) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str = "backfill_trades.py") -> argparse.ArgumentParser:
    retention = RetentionSettings()  # the defaults: the environment or .env
    parser = _OneLineErrors(
        prog=prog,
        description="Backfill trades (Kraken CSV, Parquet, JSON lines; local or gs://; or a "
        "range of a Kafka topic) into Delta tables of candles and indicators for the UTC days "
        "[start, end), written with delta-spark (replaceWhere, one commit per table).",
    )
    source = parser.add_argument_group(
        "input", "trade files (--input) or a range of a Kafka topic (--kafka-bootstrap and "
        "--kafka-topic); a Kafka range with no record, or a topic that does not exist, stops "
        "the job before anything is written")
    source.add_argument("--input", "-i", nargs="+", action="extend", default=None,
                        help="input files, folders or globs (local or gs://), in arrival order "
                        "(repeatable)")
    source.add_argument("--kafka-bootstrap", default=None,
                        help="Kafka bootstrap servers (host:port,...) to read --kafka-topic from")
    source.add_argument("--kafka-topic", default=None,
                        help="topic of trade records (the trades topic's JSON wire format), "
                        "read with Spark's Kafka source; each partition in offset order")
    source.add_argument("--kafka-start", default="earliest",
                        help="start of the range (inclusive): earliest (default), latest, an "
                        "offset for every partition (1200), per partition as JSON "
                        "('{\"0\": 10, \"1\": 12}'), or a record time: an ISO-8601 date or "
                        "datetime (UTC unless it says otherwise) or ms:<epoch ms>")
    source.add_argument("--kafka-end", default="latest",
                        help="end of the range (exclusive): latest (default), an offset, JSON "
                        "offsets per partition, or a record time, as --kafka-start")
    source.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE",
                        help="Kafka client setting for the read, e.g. security.protocol=SSL "
                        "(repeatable)")
    parser.add_argument("--start", required=True, type=parse_day, help="first day, YYYY-MM-DD")
    parser.add_argument("--end", required=True, type=parse_day,
                        help="day after the last day (exclusive), YYYY-MM-DD")
    parser.add_argument("--pairs", "--pair", "-p", nargs="+", action="extend", required=True,
                        help="pairs to backfill, e.g. XBT/USD ETH/USD (commas also work; "
                        "repeatable)")
    parser.add_argument("--output", required=True,
                        help="folder of the Delta tables (local or gs://)")
    parser.add_argument("--durations", "--duration", "-d", nargs="+", action="extend",
                        default=None,
                        help="candle durations, e.g. 1m 5m 1h 1d (default: 1m; repeatable)")
    parser.add_argument("--grace", default="5s", help="lateness grace, as the stream's (5s)")
    parser.add_argument("--arrival-order", choices=[o.value for o in ArrivalOrder],
                        default=None,
                        help="event-time (default for files): files merged by event time, as "
                        "the file replay streams them; file (default for Kafka): files in turn, "
                        "rows in file order (an archive of the trades topic; a Kafka partition "
                        "in offset order)")
    parser.add_argument("--file-reader", choices=["auto", "python", "hadoop"], default="auto",
                        help="auto: gs:// through the GCS connector where installed (Dataproc), "
                        "else fsspec/gcsfs in Python; python or hadoop force one")
    parser.add_argument("--max-event-time-skew",
                        default=os.environ.get("BRAID_MAX_EVENT_TIME_SKEW", "1h"),
                        help="a trade stamped more than this ahead of its Kafka timestamp is "
                        "rejected, as the stream dead-letters it; use the stream's value "
                        "(default: $BRAID_MAX_EVENT_TIME_SKEW, else 1h)")
    parser.add_argument("--deleted-file-retention",
                        default=retention.deleted_file_retention,
                        help="the tables' delta.deletedFileRetentionDuration: VACUUM keeps "
                        "removed files this long, so models trained on older versions can be "
                        "rebuilt (default: $BRAID_DELTA_DELETED_FILE_RETENTION, else 180d)")
    parser.add_argument("--log-retention",
                        default=retention.log_retention,
                        help="the tables' delta.logRetentionDuration: how long old versions "
                        "stay in the log (default: $BRAID_DELTA_LOG_RETENTION, else 180d)")
    parser.add_argument("--no-history-from-table", action="store_true",
                        help="do not read earlier candles from the table for indicator warm-up")
    parser.add_argument("--master", default=None,
                        help="Spark master when spark-submit did not set one: local[N] "
                        "(default local[*]) or spark://host:port")
    parser.add_argument("--shuffle-partitions", type=int, default=4)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> BackfillConfig:
    from batch.kafka_input import KafkaInput, KafkaPosition
    from features.windows import parse_duration_ms

    pairs = [p.strip() for item in args.pairs for p in item.split(",") if p.strip()]
    inputs = list(args.input or [])
    kafka = None
    if args.kafka_topic or args.kafka_bootstrap:
        if not (args.kafka_topic and args.kafka_bootstrap):
            raise ValueError("--kafka-topic and --kafka-bootstrap go together")
        if inputs:
            raise ValueError("give --input or --kafka-topic, not both")
        options = dict(item.split("=", 1) for item in args.kafka_option)
        kafka = KafkaInput(args.kafka_bootstrap, args.kafka_topic,
                           KafkaPosition.parse(args.kafka_start),
                           KafkaPosition.parse(args.kafka_end), options)
    elif not inputs:
        raise ValueError("give --input files or --kafka-bootstrap and --kafka-topic")
    arrival = args.arrival_order or (ArrivalOrder.FILE.value if kafka
                                     else ArrivalOrder.EVENT_TIME.value)
    durations = [d.strip() for item in (args.durations or DEFAULT_DURATIONS)
                 for d in item.split(",") if d.strip()]
    return BackfillConfig(
        inputs=inputs,
        start=args.start,
        end=args.end,
        pairs=pairs,
        output=args.output,
        durations_ms=durations_from(durations),
        grace_ms=parse_duration_ms(args.grace),
        arrival=ArrivalOrder(arrival),
        history_from_table=not args.no_history_from_table,
        show_progress=not args.no_progress,
        file_reader=args.file_reader,
        kafka=kafka,
        max_event_time_skew_ms=parse_duration_ms(args.max_event_time_skew),
        retention=TableRetention.parse(args.deleted_file_retention, args.log_retention),
    )


def check_local_inputs(patterns: Sequence[str]) -> None:
    """Each local `--input` names at least one file (`gs://` ones are listed by the job), so a
    typo is one line before Spark starts, not a traceback from its first stage."""
    from batch.object_storage import expand_paths, is_gcs

    for pattern in patterns:
        if is_gcs(pattern):
            continue
        try:
            found = expand_paths([pattern])
        except FileNotFoundError:
            found = []
        if not any(Path(f).is_file() for f in found):
            raise ValueError(f"--input {pattern}: no such file, folder of files or matching glob")


def job_args(
    *,
    start: date,
    end: date,
    pairs: Sequence[str],
    output: str,
    inputs: Sequence[str] = (),
    durations: Sequence[str] = DEFAULT_DURATIONS,
    grace: str | None = None,
    arrival_order: str | None = None,
    kafka_bootstrap: str | None = None,
    kafka_topic: str | None = None,
    kafka_start: str | None = None,
    kafka_end: str | None = None,
    progress: bool = True,
) -> list[str]:
    """The job's arguments for these values, in :func:`build_parser`'s option names (what the
    flow, the demo and Dataproc submissions pass)."""
    args = ["--input", *inputs] if inputs else []
    if kafka_bootstrap or kafka_topic:
        args += ["--kafka-bootstrap", kafka_bootstrap or "", "--kafka-topic", kafka_topic or ""]
        args += ["--kafka-start", kafka_start] if kafka_start else []
        args += ["--kafka-end", kafka_end] if kafka_end else []
    args += ["--start", start.isoformat(), "--end", end.isoformat(), "--pairs", *pairs,
             "--output", output, "--durations", *durations]
    args += ["--grace", grace] if grace else []
    args += ["--arrival-order", arrival_order] if arrival_order else []
    return args + ([] if progress else ["--no-progress"])


def parse_config(argv: Sequence[str], prog: str = "backfill_trades.py") -> BackfillConfig:
    """The job's config from its arguments; bad input exits with one line and code 2."""
    parser = build_parser(prog)
    args = parser.parse_args(list(argv))
    try:
        return config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None, prog: str = "backfill_trades.py") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        check_local_inputs(config.inputs)
    except ValueError as error:
        parser.error(str(error))
    from batch.logging_setup import configure_job_logging
    from batch.spark_session import spark_session

    configure_job_logging()
    spark = spark_session(master=args.master or "local[*]",
                          shuffle_partitions=args.shuffle_partitions)
    summary = run_backfill(spark, config)
    print(json.dumps(summary.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
