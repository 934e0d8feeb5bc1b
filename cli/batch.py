"""`braid batch backfill | submit-dataproc`: the Spark trades backfill, here or on Dataproc."""

from __future__ import annotations

import json
from datetime import date

import typer

app = typer.Typer(help="Spark backfills and Dataproc submission.", no_args_is_help=True)

INPUTS = typer.Option(..., "--input", "-i",
                      help="Input file, folder or glob (local or gs://); repeatable, in order.")
START = typer.Option(..., help="First UTC day, YYYY-MM-DD.")
END = typer.Option(..., help="Day after the last UTC day (exclusive), YYYY-MM-DD.")
PAIRS = typer.Option(..., "--pair", "-p", help="Pair to backfill, e.g. XBT/USD; repeatable.")
OUTPUT = typer.Option(..., help="Folder of the Delta tables (local or gs://).")
DURATIONS = typer.Option(["1m"], "--duration", "-d",
                         help="Candle duration, repeatable (1m, 5m, 1h, 1d).")
GRACE = typer.Option("5s", help="Lateness grace (the stream's).")
ARRIVAL = typer.Option("event-time", help="event-time (file replay) or file (topic archive).")


def _job_args(inputs: list[str], start: date, end: date, pairs: list[str], output: str,
              durations: list[str], grace: str, arrival_order: str) -> list[str]:
    return [
        "--input", *inputs, "--start", start.isoformat(), "--end", end.isoformat(),
        "--pairs", *pairs, "--output", output, "--durations", *durations, "--grace", grace,
        "--arrival-order", arrival_order,
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
    arrival_order: str = ARRIVAL,
    master: str = typer.Option("local[*]", help="Spark master for this process."),
    shuffle_partitions: int = typer.Option(4, help="spark.sql.shuffle.partitions"),
    progress: bool = typer.Option(True, help="Show per-stage progress."),
) -> None:
    """Backfill trades into the candles and indicators Delta tables, in this process."""
    from batch.backfill import run_backfill
    from batch.backfill_trades import build_parser, config_from_args
    from batch.spark_session import spark_session

    args = build_parser().parse_args(_job_args(
        inputs, date.fromisoformat(start), date.fromisoformat(end), pairs, output, durations,
        grace, arrival_order,
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
    arrival_order: str = ARRIVAL,
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
                         output, durations, grace, arrival_order)
    if dry_run:
        prefix = f"{staging.rstrip('/')}/braid/<tag>"
        code = StagedCode(f"{prefix}/backfill_trades.py", (f"{prefix}/braid_batch.zip",))
        request = backfill_job_request(target, code, job_args)
        typer.echo(type(request).to_json(request))
        return
    job = submit_backfill(target, job_args, wait=wait)
    typer.echo(f"submitted {job.reference.job_id} ({job.status.state.name})")
