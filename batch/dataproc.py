"""Submit the trades backfill to a Dataproc cluster as a PySpark job.

The job runs `batch/backfill_trades.py` unchanged. Braid's code travels as a zip of `features/`
and `batch/` (`--py-files`); delta-spark and Spark's Kafka source come as Maven packages
(`spark.jars.packages`, the same coordinates as the local jars: `batch.spark_session`) with
Delta's SQL extension and catalog configured, so on Dataproc the backfill writes Delta through
delta-spark, reads a Kafka topic with `--kafka-topic`, and reads/writes `gs://` through the
cluster's GCS connector. The cluster's Python
needs Braid's runtime dependencies (pyarrow, numpy, ta-lib, structlog, deltalake): install them
with the `dataproc:pip.packages` cluster property or an initialization action.

:func:`backfill_job_request` is pure (unit-tested); :func:`stage_code` uploads the two files to
the bucket (gcsfs); :func:`submit_backfill` does both and calls the Dataproc API.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from google.cloud import dataproc_v1

from batch.object_storage import filesystem_for, is_gcs
from batch.spark_session import DELTA_SPARK_PACKAGE, DELTA_SQL_CONF, SPARK_PACKAGES
from batch.table_retention import TableRetention

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = "batch/backfill_trades.py"
CODE_PACKAGES = ("features", "batch")


def delta_spark_package() -> str:
    """Maven coordinates of delta-spark for pyspark 4.2 (the jar the local runs use)."""
    return DELTA_SPARK_PACKAGE


def delta_spark_properties() -> dict[str, str]:
    """Spark properties bringing delta-spark and the Kafka source, with Delta's SQL conf."""
    return {"spark.jars.packages": ",".join(SPARK_PACKAGES), **DELTA_SQL_CONF}


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
    main_python_file_uri: str
    python_file_uris: tuple[str, ...]


def backfill_job_request(
    target: DataprocTarget,
    code: StagedCode,
    job_args: list[str],
    *,
    job_id: str | None = None,
    extra_properties: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dataproc_v1.SubmitJobRequest:
    """The SubmitJobRequest for one backfill (`job_args`: backfill_trades.py's arguments; the
    tables' retention from this machine's settings unless they give it: the cluster has no
    `BRAID_DELTA_*` environment)."""
    properties = {**delta_spark_properties(), **(extra_properties or {})}
    if "--deleted-file-retention" not in job_args and "--log-retention" not in job_args:
        job_args = [*job_args, *TableRetention.from_env().job_args()]
    job = dataproc_v1.Job(
        reference=dataproc_v1.JobReference(
            project_id=target.project_id, job_id=job_id or f"braid-backfill-{uuid.uuid4().hex[:12]}"
        ),
        placement=dataproc_v1.JobPlacement(cluster_name=target.cluster),
        pyspark_job=dataproc_v1.PySparkJob(
            main_python_file_uri=code.main_python_file_uri,
            python_file_uris=list(code.python_file_uris),
            args=[*job_args, "--no-progress"],
            properties=properties,
        ),
        labels={"app": "braid", "job": "backfill-trades", **(labels or {})},
    )
    return dataproc_v1.SubmitJobRequest(
        project_id=target.project_id, region=target.region, job=job
    )


def build_code_zip(destination: str | os.PathLike[str]) -> Path:
    """A zip of Braid's `features/` and `batch/` packages (Python files), for `--py-files`."""
    out = Path(destination)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for package in CODE_PACKAGES:
            for path in sorted((REPO_ROOT / package).rglob("*.py")):
                if "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(REPO_ROOT).as_posix())
    return out


def stage_code(target: DataprocTarget, run_tag: str | None = None) -> StagedCode:
    """Upload the entry point and the code zip under `staging/braid/<tag>/`."""
    tag = run_tag or uuid.uuid4().hex[:12]
    prefix = f"{target.staging.rstrip('/')}/braid/{tag}"
    fs = filesystem_for(prefix)
    main_uri = f"{prefix}/backfill_trades.py"
    zip_uri = f"{prefix}/braid_batch.zip"
    with tempfile.TemporaryDirectory() as tmp:
        archive = build_code_zip(Path(tmp) / "braid_batch.zip")
        fs.put_file(str(REPO_ROOT / ENTRY_POINT), main_uri[len("gs://") :])
        fs.put_file(str(archive), zip_uri[len("gs://") :])
    log.info("dataproc code staged", main=main_uri, py_files=zip_uri)
    return StagedCode(main_uri, (zip_uri,))


def submit_backfill(
    target: DataprocTarget,
    job_args: list[str],
    *,
    client: Any | None = None,
    wait: bool = False,
) -> dataproc_v1.Job:
    """Stage the code, submit the job, and return it (finished, with `wait`)."""
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
