"""`backfill`: trades -> candles and indicators Delta tables for a day range (local Spark, an
existing Dataproc cluster, or an ephemeral one), and `sensors-backfill`: the sensors archive ->
the `sensor_features` table.

The tasks run the job exactly as `braid batch backfill` / `braid batch submit-dataproc` /
`braid batch dataproc` / `braid sensors backfill` do: the job's arguments built by
`batch.backfill_trades.job_args` and read by its own parser, `batch.backfill.run_backfill`,
`batch.dataproc.submit_backfill` / `run_ephemeral`, `batch.sensors_backfill.run_backfill`. A
re-run of a range replaces the same partitions in one Delta commit per table (idempotent).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from orchestration.days import day_range
from orchestration.errors import FlowInputError
from orchestration.run_logging import forward_logs_to_prefect
from orchestration.settings import FlowSettings


class DataprocCluster(BaseModel):
    """Where to submit the backfill instead of running Spark here."""

    project: str
    region: str
    cluster: str
    staging: str  # gs://bucket[/prefix] for the job's code


class EphemeralDataproc(BaseModel):
    """Run the backfill on a Dataproc cluster created for it and deleted after it (values not
    given come from `BRAID_DATAPROC_*`, `batch.dataproc.DataprocSettings`)."""

    project: str | None = None
    region: str | None = None
    staging: str | None = None  # gs://bucket[/prefix] for the code, wheel and init action
    image_version: str | None = None
    workers: int | None = None
    sensors_archive: str | None = None  # also run the sensors backfill over this archive


@task(retries=1, retry_delay_seconds=30, task_run_name="spark backfill {start}..{end}")
def run_local_backfill(args: list[str], start: date, end: date, master: str) -> dict[str, Any]:
    """The backfill in this process (delta-spark); its summary (rows, table versions)."""
    from batch.backfill import run_backfill
    from batch.backfill_trades import parse_config
    from batch.spark_session import spark_session

    forward_logs_to_prefect()
    try:
        config = parse_config(args)
        summary = run_backfill(spark_session(master=master), config)
    except (Exception, SystemExit) as error:
        raise FlowInputError(f"backfill {start}..{end} ({' '.join(args)}) failed: "
                             f"{error}") from error
    return summary.as_dict()


@task(retries=2, retry_delay_seconds=60, task_run_name="dataproc backfill {start}..{end}")
def submit_to_dataproc(args: list[str], start: date, end: date,
                       cluster: DataprocCluster) -> dict[str, Any]:
    """Stage the code, submit the job, wait for it (a failed job fails the task)."""
    from batch.dataproc import DataprocTarget, submit_backfill

    target = DataprocTarget(cluster.project, cluster.region, cluster.cluster, cluster.staging)
    try:
        job = submit_backfill(target, args, wait=True)
    except Exception as error:
        raise FlowInputError(f"dataproc backfill {start}..{end} on {cluster.cluster} failed: "
                             f"{error}") from error
    return {"job_id": job.reference.job_id, "state": job.status.state.name}


@task(task_run_name="ephemeral dataproc backfill {start}..{end}")
def run_on_ephemeral_dataproc(args: list[str], start: date, end: date,
                              cluster: EphemeralDataproc) -> dict[str, Any]:
    """Create a cluster, run the job(s), delete the cluster (also on failure). No retries: a
    retry would create another cluster; rerun the flow instead."""
    from batch.dataproc import BackfillJob, DataprocSettings, run_ephemeral, sensors_job

    given = cluster.model_dump(exclude={"sensors_archive"}, exclude_none=True)
    jobs = [BackfillJob("markets", tuple(args))]
    if cluster.sensors_archive:
        jobs.append(sensors_job(args, cluster.sensors_archive))
    try:
        run = run_ephemeral(DataprocSettings.model_validate(given), jobs)
    except Exception as error:
        raise FlowInputError(f"ephemeral dataproc backfill {start}..{end} failed: "
                             f"{error}") from error
    return {"cluster": run.cluster, "jobs": run.jobs, "deleted": run.deleted}


@flow(name="backfill", log_prints=True)
def backfill(
    start: date | None = None,
    end: date | None = None,
    pairs: list[str] | None = None,
    durations: list[str] | None = None,
    inputs: list[str] | None = None,
    output: str | None = None,
    dataproc: DataprocCluster | None = None,
    dataproc_ephemeral: EphemeralDataproc | None = None,
) -> dict[str, Any]:
    """Backfill `[start, end)` (UTC days; default yesterday) for `pairs` and candle `durations`
    from trade files `inputs` into the Delta tables under `output` (default: the offline root
    Feast reads). With `dataproc`, the job runs on that existing cluster; with
    `dataproc_ephemeral`, on a cluster created for it and deleted after it."""
    from batch.backfill_trades import job_args

    forward_logs_to_prefect()
    settings = FlowSettings()
    first, last = day_range(start, end)
    files = [settings.resolve(p) for p in inputs] if inputs else settings.resolved_inputs()
    args = job_args(inputs=files, start=first, end=last, pairs=pairs or settings.pairs,
                    output=output or settings.offline_root(),
                    durations=durations or settings.durations, progress=False)
    logger = get_run_logger()
    if dataproc is not None and dataproc_ephemeral is not None:
        raise FlowInputError("give dataproc (an existing cluster) or dataproc_ephemeral, "
                             "not both")
    if dataproc_ephemeral is not None:
        result = run_on_ephemeral_dataproc(args, first, last, dataproc_ephemeral)
        logger.info("ephemeral dataproc cluster %s: jobs %s, deleted %s", result["cluster"],
                    result["jobs"], result["deleted"])
        return result
    if dataproc is not None:
        result = submit_to_dataproc(args, first, last, dataproc)
        logger.info("dataproc job %s finished: %s", result["job_id"], result["state"])
        return result
    summary = run_local_backfill(args, first, last, settings.spark_master)
    logger.info("Delta table versions written: %s (candles %s rows, indicators %s rows, "
                "rejected %s rows)", summary["table_versions"], summary["candles_written"],
                summary["indicator_rows_written"], summary["rejected_in_range"])
    return summary


@task(retries=1, retry_delay_seconds=30, task_run_name="sensors backfill {start}..{end}")
def run_sensors_backfill(archive: str, output: str, start: date, end: date,
                         master: str) -> int:
    from batch.sensors_backfill import run_backfill
    from streaming.settings import EventTimeSettings

    forward_logs_to_prefect()
    try:  # the stream's maximum event-time skew: the same readings dropped
        return run_backfill(archive, output, start=start.isoformat(), end=end.isoformat(),
                            master=master,
                            max_event_time_skew_ms=EventTimeSettings().max_event_time_skew_ms)
    except Exception as error:
        raise FlowInputError(f"sensors backfill {start}..{end} of {archive} failed: "
                             f"{error}") from error


@flow(name="sensors-backfill", log_prints=True)
def sensors_backfill(start: date | None = None, end: date | None = None,
                     archive: str | None = None, output: str | None = None) -> int:
    """Recompute FA, FI, FD of `[start, end)` (default yesterday) from the sensors archive into
    the `sensor_features` Delta table; returns the table version written."""
    from serving.settings import FeastSettings

    forward_logs_to_prefect()
    settings = FlowSettings()
    first, last = day_range(start, end)
    feast = FeastSettings()
    table = output or feast.table_uri(feast.sensor_features_table)
    version = run_sensors_backfill(settings.resolve(archive or settings.sensor_archive), table,
                                   first, last, settings.spark_master)
    get_run_logger().info("Delta table %s at version %s", table, version)
    return version
