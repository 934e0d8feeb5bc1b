"""`braid batch backfill | submit-dataproc`: the Spark trades backfill, here or on Dataproc."""

from __future__ import annotations

import json
from datetime import date

import typer

app = typer.Typer(help="Spark backfills and Dataproc submission.", no_args_is_help=True)

INPUTS = typer.Option([], "--input", "-i",
                      help="Input file, folder or glob (local or gs://); repeatable, in order. "
                      "Or read a Kafka topic: --kafka-bootstrap and --kafka-topic.")
KAFKA_BOOTSTRAP = typer.Option(None, help="Kafka bootstrap servers to read --kafka-topic from.")
KAFKA_TOPIC = typer.Option(None, help="Topic of trade records (the trades topic's wire format), "
                           "read by Spark's Kafka source; a missing topic or an empty range "
                           "stops the job before anything is written.")
KAFKA_START = typer.Option("earliest", help="Range start (inclusive): earliest, latest, an "
                           "offset, JSON offsets per partition ('{\"0\": 10}'), or a record "
                           "time (ISO-8601 date/datetime, UTC; or ms:<epoch ms>).")
KAFKA_END = typer.Option("latest", help="Range end (exclusive): latest, an offset, JSON offsets "
                         "per partition, or a record time, as --kafka-start.")
START = typer.Option(..., help="First UTC day, YYYY-MM-DD.")
END = typer.Option(..., help="Day after the last UTC day (exclusive), YYYY-MM-DD.")
PAIRS = typer.Option(..., "--pair", "-p", help="Pair to backfill, e.g. XBT/USD; repeatable.")
OUTPUT = typer.Option(..., help="Folder of the Delta tables (local or gs://).")
DURATIONS = typer.Option(["1m"], "--duration", "-d",
                         help="Candle duration, repeatable (1m, 5m, 1h, 1d).")
GRACE = typer.Option("5s", help="Lateness grace (the stream's).")
ARRIVAL = typer.Option(None, help="event-time (file replay; default for files) or file "
                       "(topic archive; default for a Kafka topic).")


def _job_args(inputs: list[str], start: date, end: date, pairs: list[str], output: str,
              durations: list[str], grace: str, arrival_order: str | None,
              kafka: tuple[str | None, str | None, str, str] = (None, None, "earliest",
                                                                "latest")) -> list[str]:
    bootstrap, topic, kafka_start, kafka_end = kafka
    source = ["--input", *inputs] if inputs else []
    if bootstrap or topic:
        source += ["--kafka-bootstrap", bootstrap or "", "--kafka-topic", topic or "",
                   "--kafka-start", kafka_start, "--kafka-end", kafka_end]
    return [
        *source, "--start", start.isoformat(), "--end", end.isoformat(),
        "--pairs", *pairs, "--output", output, "--durations", *durations, "--grace", grace,
        *(["--arrival-order", arrival_order] if arrival_order else []),
    ]


@app.command()
def backfill(
    inputs: list[str] = INPUTS,
    start: str = START,
    end: str = END,
    pairs: list[str] = PAIRS,
    output: str = OUTPUT,
    durations: list[str] = DURATIONS,
    grace: str = GRACE,
    arrival_order: str | None = ARRIVAL,
    kafka_bootstrap: str | None = KAFKA_BOOTSTRAP,
    kafka_topic: str | None = KAFKA_TOPIC,
    kafka_start: str = KAFKA_START,
    kafka_end: str = KAFKA_END,
    master: str = typer.Option("local[*]", help="Spark master for this process."),
    shuffle_partitions: int = typer.Option(4, help="spark.sql.shuffle.partitions"),
    progress: bool = typer.Option(True, help="Show per-stage progress."),
) -> None:
    """Backfill trades (files or a Kafka topic range) into the candles and indicators Delta
    tables (delta-spark), in this process."""
    from batch.backfill import run_backfill
    from batch.backfill_trades import build_parser, config_from_args
    from batch.spark_session import spark_session

    args = build_parser().parse_args(_job_args(
        inputs, date.fromisoformat(start), date.fromisoformat(end), pairs, output, durations,
        grace, arrival_order, (kafka_bootstrap, kafka_topic, kafka_start, kafka_end),
    ) + ([] if progress else ["--no-progress"]))
    config = config_from_args(args)
    spark = spark_session(master=master, shuffle_partitions=shuffle_partitions)
    summary = run_backfill(spark, config)
    typer.echo(json.dumps(summary.as_dict(), indent=2, sort_keys=True))


@app.command("submit-dataproc")
def submit_dataproc(
    project: str = typer.Option(..., envvar="GOOGLE_CLOUD_PROJECT", help="GCP project id."),
    region: str = typer.Option(..., help="Dataproc region, e.g. europe-west1."),
    cluster: str = typer.Option(..., help="Dataproc cluster name."),
    staging: str = typer.Option(..., help="gs://bucket or gs://bucket/prefix for the job code."),
    inputs: list[str] = INPUTS,
    start: str = START,
    end: str = END,
    pairs: list[str] = PAIRS,
    output: str = OUTPUT,
    durations: list[str] = DURATIONS,
    grace: str = GRACE,
    arrival_order: str | None = ARRIVAL,
    kafka_bootstrap: str | None = KAFKA_BOOTSTRAP,
    kafka_topic: str | None = KAFKA_TOPIC,
    kafka_start: str = KAFKA_START,
    kafka_end: str = KAFKA_END,
    wait: bool = typer.Option(False, help="Wait until the job finishes."),
    dry_run: bool = typer.Option(False, help="Print the request instead of submitting it."),
) -> None:
    """Submit the backfill as a PySpark job to a Dataproc cluster (delta-spark on the cluster)."""
    from batch.dataproc import (
        DataprocTarget,
        StagedCode,
        backfill_job_request,
        submit_backfill,
    )

    target = DataprocTarget(project, region, cluster, staging)
    job_args = _job_args(inputs, date.fromisoformat(start), date.fromisoformat(end), pairs,
                         output, durations, grace, arrival_order,
                         (kafka_bootstrap, kafka_topic, kafka_start, kafka_end))
    if dry_run:
        prefix = f"{staging.rstrip('/')}/braid/<tag>"
        code = StagedCode(f"{prefix}/backfill_trades.py", (f"{prefix}/braid_batch.zip",))
        request = backfill_job_request(target, code, job_args)
        typer.echo(type(request).to_json(request))
        return
    job = submit_backfill(target, job_args, wait=wait)
    typer.echo(f"submitted {job.reference.job_id} ({job.status.state.name})")
