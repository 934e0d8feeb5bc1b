"""`braid batch backfill | submit-dataproc | dataproc`: the Spark trades backfill, here, on an
existing Dataproc cluster, or on an ephemeral one.

The backfill's options are defined once, by the job (`batch/backfill_trades.py`): these commands
hand the job's arguments to it unchanged, so `braid batch backfill` and `spark-submit
batch/backfill_trades.py` take the same options (`braid batch backfill --help` prints them).
The Dataproc commands take their own options first, then `--` and the job's arguments.
"""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Spark backfills and Dataproc submission.", no_args_is_help=True)

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
JOB_ARGS_HELP = ("After `--`: the backfill's own arguments, as `braid batch backfill` takes them "
                 "(--input ... --start ... --end ... --pairs ... --output gs://...).")


@app.command(context_settings=PASSTHROUGH, add_help_option=False)
def backfill(ctx: typer.Context) -> None:
    """Backfill trades (files or a Kafka topic range) into the candles and indicators Delta
    tables (delta-spark), in this process. Options: `braid batch backfill --help`."""
    from batch.backfill_trades import main

    raise typer.Exit(main(list(ctx.args), prog="braid batch backfill"))


def _checked_job_args(args: list[str], prog: str) -> list[str]:
    """The job's arguments, parsed by the job's own parser here first (bad input fails before
    anything is staged or created)."""
    from batch.backfill_trades import parse_config

    if not args:
        raise typer.BadParameter(f"give the backfill's arguments after `--`. {JOB_ARGS_HELP}")
    parse_config(args, prog=prog)
    return args


@app.command("submit-dataproc", context_settings=PASSTHROUGH,
             help="Submit the backfill as a PySpark job to an existing Dataproc cluster. "
             + JOB_ARGS_HELP)
def submit_dataproc(
    ctx: typer.Context,
    project: str = typer.Option(..., envvar="GOOGLE_CLOUD_PROJECT", help="GCP project id."),
    region: str = typer.Option(..., help="Dataproc region, e.g. europe-west1."),
    cluster: str = typer.Option(..., help="Dataproc cluster name."),
    staging: str = typer.Option(..., help="gs://bucket or gs://bucket/prefix for the job code."),
    wait: bool = typer.Option(False, help="Wait until the job finishes."),
    dry_run: bool = typer.Option(False, help="Print the request instead of submitting it."),
) -> None:
    from batch.dataproc import DataprocTarget, StagedCode, backfill_job_request, submit_backfill

    target = DataprocTarget(project, region, cluster, staging)
    job_args = _checked_job_args(list(ctx.args), "braid batch submit-dataproc -- ")
    if dry_run:
        code = StagedCode(f"{staging.rstrip('/')}/braid/<tag>")
        request = backfill_job_request(target, code, job_args)
        typer.echo(type(request).to_json(request))
        return
    job = submit_backfill(target, job_args, wait=wait)
    typer.echo(f"submitted {job.reference.job_id} ({job.status.state.name})")


@app.command("dataproc", context_settings=PASSTHROUGH,
             help="Create an ephemeral Dataproc cluster, run the markets backfill (and the "
             "sensors backfill with --sensors-archive) on it, and delete it, also on failure. "
             + JOB_ARGS_HELP)
def dataproc(
    ctx: typer.Context,
    project: str = typer.Option(None, envvar="BRAID_DATAPROC_PROJECT", help="GCP project id."),
    region: str = typer.Option(None, envvar="BRAID_DATAPROC_REGION",
                               help="Dataproc region (default europe-west1)."),
    staging: str = typer.Option(None, envvar="BRAID_DATAPROC_STAGING",
                                help="gs://bucket or gs://bucket/prefix for the code, wheel "
                                "and init action."),
    image_version: str = typer.Option(None, envvar="BRAID_DATAPROC_IMAGE_VERSION",
                                      help="Dataproc image (default 3.0-debian12)."),
    workers: int = typer.Option(None, envvar="BRAID_DATAPROC_WORKERS",
                                help="Primary workers (default 2)."),
    sensors_archive: str = typer.Option(
        None, help="Also run the sensors backfill over this archive (gs://...), same days, "
        "into <--output>/sensor_features."),
    dry_run: bool = typer.Option(False, help="Print the cluster and job requests, no call."),
) -> None:
    from google.cloud import dataproc_v1

    from batch.dataproc import (
        BackfillJob,
        DataprocSettings,
        StagedCode,
        cluster_request,
        delete_request,
        job_request,
        run_ephemeral,
        sensors_job,
    )

    given = {"project": project, "region": region, "staging": staging,
             "image_version": image_version, "workers": workers}
    settings = DataprocSettings.model_validate({k: v for k, v in given.items() if v is not None})
    job_args = _checked_job_args(list(ctx.args), "braid batch dataproc -- ")
    jobs = [BackfillJob("markets", tuple(job_args))]
    if sensors_archive:
        jobs.append(sensors_job(job_args, sensors_archive))
    if dry_run:
        code = StagedCode(f"{settings.staging.rstrip('/')}/braid/<tag>")
        cluster = "braid-backfill-<tag>"
        typer.echo(dataproc_v1.CreateClusterRequest.to_json(
            cluster_request(settings, cluster, code)))
        for job in jobs:
            typer.echo(dataproc_v1.SubmitJobRequest.to_json(
                job_request(settings.project, settings.region, cluster, code, job)))
        typer.echo(dataproc_v1.DeleteClusterRequest.to_json(delete_request(settings, cluster)))
        return
    run = run_ephemeral(settings, jobs)
    typer.echo(json.dumps({"cluster": run.cluster, "jobs": run.jobs, "deleted": run.deleted}))

