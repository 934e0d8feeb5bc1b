"""Backfills on Dataproc: a job on an existing cluster, or an ephemeral cluster per run.

**Code.** The jobs run Braid's `spark-submit` entry points unchanged (`batch/backfill_trades.py`,
`batch/sensors_backfill.py`). :func:`stage_code` uploads them with a zip of `features/` and
`batch/` (the job's `python_file_uris`), Braid's wheel, and the initialization action
(:data:`INIT_ACTION`) to `<staging>/braid/<tag>/`.

**Spark properties** come from `batch.spark_conf` for the `dataproc` deployment, as for every
deployment: delta-spark and Spark's Kafka source as Maven packages (`spark.jars.packages`),
Delta's SQL extension, catalog and GCS log store; `gs://` through the image's GCS connector.

**Ephemeral cluster** (:func:`run_ephemeral`, `braid batch dataproc`): create a cluster of the
configured image version whose initialization action installs TA-Lib and the batch jobs'
Python packages (:data:`CLUSTER_PACKAGES`, the pins of `pyproject.toml`) and Braid's wheel
(`--no-deps`: the cluster keeps its own Spark), with the connector packages as cluster
properties and an idle-delete TTL as a safety net; wait for it; submit the markets backfill and
then the sensors backfill, waiting for each; delete the cluster and wait for the deletion,
also when creating it or a job failed.

Requests are `google-cloud-dataproc` types built by pure functions (unit-tested against a fake
client); the clients are created only when none is given. Nothing here runs on the cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from google.cloud import dataproc_v1
from google.protobuf import duration_pb2
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from batch.code_zip import REPO_ROOT, ZIP_NAME, build_code_zip
from batch.object_storage import filesystem_for, is_gcs
from batch.spark_conf import Deployment, launch_properties, session_properties
from batch.table_retention import TableRetention

log = structlog.get_logger(__name__)

MARKETS_ENTRY_POINT = "batch/backfill_trades.py"
SENSORS_ENTRY_POINT = "batch/sensors_backfill.py"
ENTRY_POINT = MARKETS_ENTRY_POINT
INIT_ACTION_NAME = "install_braid.sh"
WHEEL_METADATA_KEY = "braid-wheel"
CLUSTER_PACKAGES = (
    "ta-lib==0.8.2",
    "numpy==2.4.6",
    "numba==0.68.1",
    "pandas==2.3.3",
    "pyarrow==25.0.1",
    "deltalake==1.6.6",
    "gcsfs==2026.10.1",
    "structlog==26.1.0",
    "tqdm==4.70.1",
)
"""What the batch jobs import on the cluster besides Spark (pinned as in pyproject.toml; a unit
test holds them equal)."""
INIT_ACTION = """#!/bin/bash
# Braid's Dataproc initialization action (staged by batch/dataproc.py, runs on every node):
# TA-Lib and the batch jobs' Python packages, then Braid's wheel without its dependencies (the
# cluster's own Spark stays; the wheel's other dependencies serve the platform, not the jobs).
set -euxo pipefail
PIP=/opt/conda/default/bin/pip
[ -x "$PIP" ] || PIP="python3 -m pip"
WHEEL="$(/usr/share/google/get_metadata_value attributes/{key})"
$PIP install --no-cache-dir {packages}
gsutil cp "$WHEEL" /tmp/
$PIP install --no-cache-dir --no-deps "/tmp/$(basename "$WHEEL")"
"""


def init_action_script() -> str:
    """The initialization action's text (:data:`INIT_ACTION` filled in)."""
    return INIT_ACTION.format(key=WHEEL_METADATA_KEY, packages=" ".join(CLUSTER_PACKAGES))


def dataproc_properties() -> dict[str, str]:
    """The jobs' Spark properties: `batch.spark_conf` for the `dataproc` deployment."""
    return {**launch_properties(Deployment.DATAPROC),
            **session_properties(Deployment.DATAPROC)}


def delta_spark_properties() -> dict[str, str]:
    """Alias of :func:`dataproc_properties` (delta-spark, the Kafka source, Delta's conf)."""
    return dataproc_properties()


class DataprocSettings(BaseSettings):
    """An ephemeral Dataproc cluster (prefix `BRAID_DATAPROC_`, or `.env`)."""

    model_config = SettingsConfigDict(env_prefix="BRAID_DATAPROC_", env_file=".env",
                                      extra="ignore")

    project: str = ""
    region: str = "europe-west1"
    #: gs://bucket[/prefix] for the jobs' code, the wheel and the initialization action.
    staging: str = ""
    #: Dataproc image; its Spark must be the line delta-spark's artifact names (4.2 for
    #: `delta-spark_4.2_2.13`): see batch/README.md.
    image_version: str = "3.0-debian12"
    master_machine_type: str = "n2-standard-4"
    worker_machine_type: str = "n2-standard-4"
    workers: int = Field(default=2, ge=2)
    #: The cluster deletes itself after this long idle, should this process die first.
    idle_delete_ttl_s: int = Field(default=1800, ge=600)
    init_action_timeout_s: int = Field(default=900, gt=0)
    create_timeout_s: float = Field(default=1800.0, gt=0)
    job_timeout_s: float = Field(default=7200.0, gt=0)
    delete_timeout_s: float = Field(default=1200.0, gt=0)


@dataclass(frozen=True)
class DataprocTarget:
    """Where the job runs and where its code is staged (`gs://bucket[/prefix]`)."""

    project_id: str
    region: str
    cluster: str
    staging: str

    def __post_init__(self) -> None:
        if not is_gcs(self.staging):
            raise ValueError(f"staging must be a gs:// location, got {self.staging!r}")

    @property
    def api_endpoint(self) -> str:
        return f"{self.region}-dataproc.googleapis.com:443"


@dataclass(frozen=True)
class StagedCode:
    """Where one run's files are in the staging bucket."""

    prefix: str  # gs://bucket/prefix/braid/<tag>
    wheel_name: str = "braid-0.1.0-py3-none-any.whl"

    @property
    def markets_entry(self) -> str:
        return f"{self.prefix}/{Path(MARKETS_ENTRY_POINT).name}"

    @property
    def sensors_entry(self) -> str:
        return f"{self.prefix}/{Path(SENSORS_ENTRY_POINT).name}"

    @property
    def code_zip(self) -> str:
        return f"{self.prefix}/{ZIP_NAME}"

    @property
    def wheel(self) -> str:
        return f"{self.prefix}/{self.wheel_name}"

    @property
    def init_action(self) -> str:
        return f"{self.prefix}/{INIT_ACTION_NAME}"

    # the former names, used by callers that submit the markets job only
    @property
    def main_python_file_uri(self) -> str:
        return self.markets_entry

    @property
    def python_file_uris(self) -> tuple[str, ...]:
        return (self.code_zip,)


@dataclass(frozen=True)
class BackfillJob:
    """One job of a run: which entry point, with which arguments (the entry point's own)."""

    kind: str  # "markets" | "sensors"
    args: tuple[str, ...]
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def main_uri(self, code: StagedCode) -> str:
        return code.markets_entry if self.kind == "markets" else code.sensors_entry

    def final_args(self) -> list[str]:
        """The arguments sent. A markets job's: without its progress bar (no terminal there),
        and with the tables' retention of this machine's settings unless it gives its own (the
        cluster has no `BRAID_DELTA_*` environment)."""
        if self.kind != "markets":
            return list(self.args)
        args = list(self.args)
        given = TableRetention.from_env().job_args()  # [option, value, option, value]
        for option, value in zip(given[::2], given[1::2], strict=True):
            if option not in args:
                args += [option, value]
        return args + ([] if "--no-progress" in args else ["--no-progress"])


def sensors_job(markets_args: Sequence[str], archive: str) -> BackfillJob:
    """The sensors backfill for the same days and offline root as a markets job: `archive`
    (the sensors archive, gs://...) into `<output>/sensor_features` (and `sensor_readings`
    beside it)."""
    from batch.backfill_trades import parse_config

    config = parse_config(markets_args)
    return BackfillJob("sensors", (
        "--input", archive, "--output", f"{config.output.rstrip('/')}/sensor_features",
        "--start", config.start.isoformat(), "--end", config.end.isoformat()))


def job_request(
    project_id: str, region: str, cluster: str, code: StagedCode, job: BackfillJob,
    *, extra_properties: dict[str, str] | None = None, labels: dict[str, str] | None = None,
) -> dataproc_v1.SubmitJobRequest:
    """The SubmitJobRequest of one backfill job on `cluster`."""
    if job.kind not in ("markets", "sensors"):
        raise ValueError(f"unknown backfill job {job.kind!r} (markets or sensors)")
    spark_job = dataproc_v1.Job(
        reference=dataproc_v1.JobReference(
            project_id=project_id, job_id=f"braid-{job.kind}-backfill-{job.job_id}"),
        placement=dataproc_v1.JobPlacement(cluster_name=cluster),
        pyspark_job=dataproc_v1.PySparkJob(
            main_python_file_uri=job.main_uri(code),
            python_file_uris=[code.code_zip],
            args=job.final_args(),
            properties={**dataproc_properties(), **(extra_properties or {})},
        ),
        labels={"app": "braid", "job": f"backfill-{job.kind}", **(labels or {})},
    )
    return dataproc_v1.SubmitJobRequest(project_id=project_id, region=region, job=spark_job)


def backfill_job_request(
    target: DataprocTarget,
    code: StagedCode,
    job_args: list[str],
    *,
    job_id: str | None = None,
    extra_properties: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dataproc_v1.SubmitJobRequest:
    """The SubmitJobRequest of the markets backfill on an existing cluster (`job_args`: the
    arguments of `backfill_trades.py`)."""
    request = job_request(target.project_id, target.region, target.cluster, code,
                          BackfillJob("markets", tuple(job_args)),
                          extra_properties=extra_properties, labels=labels)
    if job_id is not None:
        request.job.reference.job_id = job_id
    return request


def cluster_request(settings: DataprocSettings, cluster: str, code: StagedCode,
                    labels: dict[str, str] | None = None) -> dataproc_v1.CreateClusterRequest:
    """The CreateClusterRequest of an ephemeral cluster for one run (module docstring)."""
    properties = {f"spark:{key}": value for key, value in dataproc_properties().items()}
    config = dataproc_v1.ClusterConfig(
        gce_cluster_config=dataproc_v1.GceClusterConfig(
            metadata={WHEEL_METADATA_KEY: code.wheel}),
        master_config=dataproc_v1.InstanceGroupConfig(
            num_instances=1, machine_type_uri=settings.master_machine_type),
        worker_config=dataproc_v1.InstanceGroupConfig(
            num_instances=settings.workers, machine_type_uri=settings.worker_machine_type),
        software_config=dataproc_v1.SoftwareConfig(
            image_version=settings.image_version, properties=properties),
        initialization_actions=[dataproc_v1.NodeInitializationAction(
            executable_file=code.init_action,
            execution_timeout=duration_pb2.Duration(seconds=settings.init_action_timeout_s))],
        lifecycle_config=dataproc_v1.LifecycleConfig(
            idle_delete_ttl=duration_pb2.Duration(seconds=settings.idle_delete_ttl_s)),
    )
    return dataproc_v1.CreateClusterRequest(
        project_id=settings.project, region=settings.region,
        cluster=dataproc_v1.Cluster(project_id=settings.project, cluster_name=cluster,
                                    config=config,
                                    labels={"app": "braid", "run": "backfill", **(labels or {})}),
    )


def delete_request(settings: DataprocSettings, cluster: str) -> dataproc_v1.DeleteClusterRequest:
    return dataproc_v1.DeleteClusterRequest(
        project_id=settings.project, region=settings.region, cluster_name=cluster)


def build_wheel(destination: Path) -> Path:
    """Braid's wheel (`pip wheel --no-deps` of a copy of the checkout's sources, so the build
    leaves nothing in the checkout) in `destination`."""
    source = destination / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".venv-*", "var", "build", "*.egg-info", "__pycache__", "tests",
        "bench", ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(destination),
         str(source)],
        check=True, capture_output=True, text=True,
    )
    wheels = sorted(destination.glob("braid-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip wheel produced no braid wheel in {destination}")
    return wheels[-1]


def stage_code(target: DataprocTarget | str, run_tag: str | None = None, *,
               with_wheel: bool = False) -> StagedCode:
    """Upload the entry points and the code zip (and, `with_wheel`, Braid's wheel and the
    initialization action) under `<staging>/braid/<tag>/`. `target`: a target or its staging."""
    staging = target.staging if isinstance(target, DataprocTarget) else target
    if not is_gcs(staging):
        raise ValueError(f"staging must be a gs:// location, got {staging!r}")
    tag = run_tag or uuid.uuid4().hex[:12]
    prefix = f"{staging.rstrip('/')}/braid/{tag}"
    fs = filesystem_for(prefix)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        code = StagedCode(prefix)
        uploads = {
            code.markets_entry: REPO_ROOT / MARKETS_ENTRY_POINT,
            code.sensors_entry: REPO_ROOT / SENSORS_ENTRY_POINT,
            code.code_zip: build_code_zip(folder / ZIP_NAME),
        }
        if with_wheel:
            wheel = build_wheel(folder / "wheel")
            code = StagedCode(prefix, wheel.name)
            script = folder / INIT_ACTION_NAME
            script.write_text(init_action_script())
            uploads |= {code.wheel: wheel, code.init_action: script}
        for uri, path in uploads.items():
            fs.put_file(str(path), uri[len("gs://"):])
    log.info("dataproc code staged", prefix=prefix, files=sorted(uploads))
    return code


def submit_backfill(
    target: DataprocTarget,
    job_args: list[str],
    *,
    client: Any | None = None,
    wait: bool = False,
) -> dataproc_v1.Job:
    """Stage the code, submit the markets backfill to an existing cluster, and return the job
    (finished, with `wait`)."""
    code = stage_code(target)
    request = backfill_job_request(target, code, job_args)
    jobs = client or dataproc_v1.JobControllerClient(
        client_options={"api_endpoint": target.api_endpoint}
    )
    if wait:
        operation = jobs.submit_job_as_operation(request=request)
        job = operation.result()
    else:
        job = jobs.submit_job(request=request)
    log.info("dataproc job submitted", job_id=job.reference.job_id, cluster=target.cluster,
             region=target.region, state=job.status.state.name if job.status else None)
    return job


class DataprocJobError(RuntimeError):
    """A backfill job on Dataproc ended in another state than DONE."""


@dataclass
class EphemeralRun:
    """What an ephemeral run did: its cluster and each job's final state."""

    cluster: str
    code: StagedCode
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> final state
    deleted: bool = False


def run_ephemeral(
    settings: DataprocSettings,
    jobs: Sequence[BackfillJob],
    *,
    cluster_client: Any | None = None,
    job_client: Any | None = None,
    stage: Callable[[str, str], StagedCode] | None = None,
    run_tag: str | None = None,
) -> EphemeralRun:
    """Create a cluster, run `jobs` on it one after another (each waited for), and delete it,
    also when creating it or a job fails. Returns the run's record; a failed job raises
    :class:`DataprocJobError` (after the deletion)."""
    if not settings.project or not is_gcs(settings.staging):
        raise ValueError("an ephemeral Dataproc run needs BRAID_DATAPROC_PROJECT and a gs:// "
                         "BRAID_DATAPROC_STAGING")
    tag = run_tag or uuid.uuid4().hex[:8]
    cluster = f"braid-backfill-{tag}"
    code = (stage or (lambda staging, t: stage_code(staging, t, with_wheel=True)))(
        settings.staging, tag)
    endpoint = {"api_endpoint": f"{settings.region}-dataproc.googleapis.com:443"}
    clusters = cluster_client or dataproc_v1.ClusterControllerClient(client_options=endpoint)
    runner = job_client or dataproc_v1.JobControllerClient(client_options=endpoint)
    run = EphemeralRun(cluster, code)
    bound = log.bind(cluster=cluster, region=settings.region, project=settings.project)

    def delete(quiet: bool) -> None:
        bound.info("dataproc cluster deleting")
        try:
            clusters.delete_cluster(request=delete_request(settings, cluster)).result(
                timeout=settings.delete_timeout_s)
        except Exception as error:
            if not quiet:
                raise
            # the run already failed: report that failure, and this one beside it
            bound.error("dataproc cluster deletion failed", error=str(error))
            return
        run.deleted = True
        bound.info("dataproc cluster deleted")

    try:
        bound.info("dataproc cluster creating", image=settings.image_version,
                   workers=settings.workers)
        clusters.create_cluster(request=cluster_request(settings, cluster, code)).result(
            timeout=settings.create_timeout_s)
        for job in jobs:
            request = job_request(settings.project, settings.region, cluster, code, job)
            job_id = request.job.reference.job_id
            bound.info("dataproc job submitted", job=job_id, kind=job.kind)
            done = runner.submit_job_as_operation(request=request).result(
                timeout=settings.job_timeout_s)
            state = done.status.state.name
            run.jobs[job_id] = state
            bound.info("dataproc job finished", job=job_id, state=state)
            if done.status.state != dataproc_v1.JobStatus.State.DONE:
                raise DataprocJobError(f"{job_id} ended {state}: {done.status.details}")
    except BaseException:
        delete(quiet=True)
        raise
    delete(quiet=False)
    return run
