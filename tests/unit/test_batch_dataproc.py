"""Dataproc: the complete requests of a submission and of an ephemeral run, against fake clients
(no network: the Google API cannot be reached from here), and the Spark properties each
deployment gets from `batch.spark_conf`."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from google.cloud import dataproc_v1
from google.protobuf import duration_pb2

from batch.dataproc import (
    CLUSTER_PACKAGES,
    BackfillJob,
    DataprocJobError,
    DataprocSettings,
    DataprocTarget,
    StagedCode,
    backfill_job_request,
    build_code_zip,
    init_action_script,
    run_ephemeral,
    sensors_job,
    submit_backfill,
)
from batch.spark_conf import (
    LOCAL_FS_CLASS,
    Deployment,
    launch_properties,
    local_fs_conf,
    session_properties,
)

REPO = Path(__file__).resolve().parents[2]
TARGET = DataprocTarget("braid-prod", "europe-west1", "braid-batch", "gs://braid-staging/jobs")
CODE = StagedCode("gs://braid-staging/jobs/braid/t1")
ARGS = ["--input", "gs://braid-data/trades/*.csv", "--start", "2018-05-08", "--end", "2018-05-10",
        "--pairs", "XBT/USD", "--output", "gs://braid-offline/markets"]
DELTA = "io.delta:delta-spark_4.2_2.13:4.4.0"
KAFKA = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"
# what every Dataproc job and cluster gets (written out here, not computed by the code)
JOB_PROPERTIES = {
    "spark.jars.packages": f"{DELTA},{KAFKA}",
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.delta.logStore.gs.impl": "io.delta.storage.GCSLogStore",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.replaceWhere.dataColumns.enabled": "false",
    "spark.databricks.delta.snapshotPartitions": "4",
}


RETENTION_ARGS = ["--deleted-file-retention", "180d", "--log-retention", "365d"]


@pytest.fixture(autouse=True)
def _retention(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's table retention (the default deleted-file one, a year of log)."""
    monkeypatch.delenv("BRAID_DELTA_DELETED_FILE_RETENTION", raising=False)
    monkeypatch.setenv("BRAID_DELTA_LOG_RETENTION", "365d")


def test_request_targets_the_cluster_and_region_with_the_entry_point_and_code_zip() -> None:
    request = backfill_job_request(TARGET, CODE, ARGS, job_id="backfill-1")
    assert request == dataproc_v1.SubmitJobRequest(
        project_id="braid-prod", region="europe-west1", job=dataproc_v1.Job(
            reference=dataproc_v1.JobReference(project_id="braid-prod", job_id="backfill-1"),
            placement=dataproc_v1.JobPlacement(cluster_name="braid-batch"),
            pyspark_job=dataproc_v1.PySparkJob(
                main_python_file_uri="gs://braid-staging/jobs/braid/t1/backfill_trades.py",
                python_file_uris=["gs://braid-staging/jobs/braid/t1/braid_batch.zip"],
                # the cluster has no BRAID_DELTA_* environment: retention travels as arguments
                args=[*ARGS, *RETENTION_ARGS, "--no-progress"], properties=JOB_PROPERTIES),
            labels={"app": "braid", "job": "backfill-markets"}))
    # one retention given: the other still comes from this machine's setting
    given = [*ARGS, "--deleted-file-retention", "30d"]
    assert list(backfill_job_request(TARGET, CODE, given).job.pyspark_job.args) == [
        *given, "--log-retention", "365d", "--no-progress"]
    both = [*ARGS, "--deleted-file-retention", "30d", "--log-retention", "40d"]
    assert list(backfill_job_request(TARGET, CODE, both).job.pyspark_job.args) == [
        *both, "--no-progress"]


def test_dataproc_packages_are_the_jars_the_local_runs_fetch() -> None:
    """The Maven coordinates Dataproc resolves equal infra/poms/spark.xml's (one source of
    versions for local runs and the cluster), and match the installed pyspark."""
    import xml.etree.ElementTree as ET

    import pyspark

    from batch.spark_conf import SPARK_PACKAGES, SPARK_VERSION

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(REPO / "infra" / "poms" / "spark.xml").getroot()
    props = {el.tag.split("}")[1]: el.text for el in root.find("m:properties", ns) or []}
    declared = set()
    for dep in root.iterfind("m:dependencies/m:dependency", ns):
        group, artifact = dep.findtext("m:groupId", namespaces=ns), dep.findtext(
            "m:artifactId", namespaces=ns)
        version = (dep.findtext("m:version", namespaces=ns) or "")
        for key, value in props.items():
            version = version.replace("${" + key + "}", value or "")
        declared.add(f"{group}:{artifact}:{version}")
    assert set(SPARK_PACKAGES) == {DELTA, KAFKA} <= declared
    assert pyspark.__version__ == SPARK_VERSION


def test_staging_must_be_on_gcs() -> None:
    with pytest.raises(ValueError, match="gs://"):
        DataprocTarget("p", "r", "c", "/tmp/staging")


def test_code_zip_holds_features_and_batch_and_imports_standalone(tmp_path: Path) -> None:
    archive = build_code_zip(tmp_path / "braid_batch.zip")
    names = zipfile.ZipFile(archive).namelist()
    assert "batch/backfill_trades.py" in names and "batch/sensors_backfill.py" in names
    assert "features/candles.py" in names
    assert not any(n.startswith(("streaming/", "cli/", "tests/", "infra/")) for n in names)
    # As on Dataproc: only the zip on the path, run from elsewhere.
    probe = (
        "import batch.backfill, batch.code_zip, features.candles, sys;"
        "assert batch.backfill.__file__.startswith(sys.argv[1]), batch.backfill.__file__;"
        "assert batch.code_zip.running_from_zip()"
    )
    subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = [sys.argv[1]] + "
         f"[p for p in {sys.path!r} if 'site-packages' in p]; {probe}", str(archive)],
        cwd=tmp_path, check=True, timeout=120,
    )


def test_submit_stages_code_and_sends_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    import batch.dataproc as dataproc

    monkeypatch.setattr(dataproc, "stage_code", lambda target: CODE)
    sent = []

    class RecordingJobClient:
        def submit_job(self, request: Any) -> Any:
            sent.append(request)
            return request.job

    job = submit_backfill(TARGET, ARGS, client=RecordingJobClient())
    assert len(sent) == 1
    assert sent[0].job.pyspark_job.main_python_file_uri == CODE.markets_entry
    assert job.placement.cluster_name == "braid-batch"


# ---- the ephemeral cluster --------------------------------------------------------------

SETTINGS = DataprocSettings(
    project="braid-prod", region="europe-west1", staging="gs://braid-staging/jobs",
    image_version="3.0-debian12", workers=3, worker_machine_type="n2-highmem-4",
    idle_delete_ttl_s=1800, init_action_timeout_s=900, create_timeout_s=1500.0,
    job_timeout_s=3600.0, delete_timeout_s=900.0)
RUN_CODE = StagedCode("gs://braid-staging/jobs/braid/r1")
CLUSTER = "braid-backfill-r1"


class Operation:
    """A long-running operation: `result(timeout)` is recorded, then returns or raises."""

    def __init__(self, calls: list[tuple[str, Any]], name: str, value: Any = None,
                 error: Exception | None = None) -> None:
        self.calls, self.name, self.value, self.error = calls, name, value, error

    def result(self, timeout: float | None = None) -> Any:
        self.calls.append((f"wait {self.name}", timeout))
        if self.error is not None:
            raise self.error
        return self.value


class FakeDataproc:
    """Both clients of `google-cloud-dataproc`, recording every request in order."""

    def __init__(self, job_states: tuple[str, ...] = ("DONE", "DONE"),
                 create_error: Exception | None = None,
                 delete_error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.job_states = list(job_states)
        self.create_error, self.delete_error = create_error, delete_error

    def create_cluster(self, request: dataproc_v1.CreateClusterRequest) -> Operation:
        self.calls.append(("create", request))
        return Operation(self.calls, "create", error=self.create_error)

    def delete_cluster(self, request: dataproc_v1.DeleteClusterRequest) -> Operation:
        self.calls.append(("delete", request))
        return Operation(self.calls, "delete", error=self.delete_error)

    def submit_job_as_operation(self, request: dataproc_v1.SubmitJobRequest) -> Operation:
        self.calls.append(("submit", request))
        state = getattr(dataproc_v1.JobStatus.State, self.job_states.pop(0))
        job = dataproc_v1.Job(reference=request.job.reference,
                              status=dataproc_v1.JobStatus(state=state, details="driver exit 1"))
        return Operation(self.calls, "job", value=job)


def ephemeral(fake: FakeDataproc, jobs: list[BackfillJob]) -> Any:
    staged: list[tuple[str, str]] = []

    def stage(staging: str, tag: str) -> StagedCode:
        staged.append((staging, tag))
        return RUN_CODE

    run = run_ephemeral(SETTINGS, jobs, cluster_client=fake, job_client=fake, stage=stage,
                        run_tag="r1")
    assert staged == [("gs://braid-staging/jobs", "r1")]
    return run


MARKETS = BackfillJob("markets", tuple(ARGS), job_id="m1")
SENSORS = BackfillJob("sensors", ("--input", "gs://braid-data/archive", "--output",
                                  "gs://braid-offline/markets/sensor_features", "--start",
                                  "2018-05-08", "--end", "2018-05-10"), job_id="s1")


def expected_job(kind: str, job_id: str, main: str, args: list[str]
                 ) -> dataproc_v1.SubmitJobRequest:
    return dataproc_v1.SubmitJobRequest(
        project_id="braid-prod", region="europe-west1", job=dataproc_v1.Job(
            reference=dataproc_v1.JobReference(
                project_id="braid-prod", job_id=f"braid-{kind}-backfill-{job_id}"),
            placement=dataproc_v1.JobPlacement(cluster_name=CLUSTER),
            pyspark_job=dataproc_v1.PySparkJob(
                main_python_file_uri=f"gs://braid-staging/jobs/braid/r1/{main}",
                python_file_uris=["gs://braid-staging/jobs/braid/r1/braid_batch.zip"],
                args=args, properties=JOB_PROPERTIES),
            labels={"app": "braid", "job": f"backfill-{kind}"}))


EXPECTED_DELETE = dataproc_v1.DeleteClusterRequest(
    project_id="braid-prod", region="europe-west1", cluster_name=CLUSTER)


def test_an_ephemeral_run_creates_the_cluster_runs_both_backfills_and_deletes_it() -> None:
    fake = FakeDataproc()
    run = ephemeral(fake, [MARKETS, SENSORS])

    expected_cluster = dataproc_v1.CreateClusterRequest(
        project_id="braid-prod", region="europe-west1", cluster=dataproc_v1.Cluster(
            project_id="braid-prod", cluster_name=CLUSTER,
            labels={"app": "braid", "run": "backfill"},
            config=dataproc_v1.ClusterConfig(
                gce_cluster_config=dataproc_v1.GceClusterConfig(metadata={
                    "braid-wheel": "gs://braid-staging/jobs/braid/r1/"
                                   "braid-0.1.0-py3-none-any.whl"}),
                master_config=dataproc_v1.InstanceGroupConfig(
                    num_instances=1, machine_type_uri="n2-standard-4"),
                worker_config=dataproc_v1.InstanceGroupConfig(
                    num_instances=3, machine_type_uri="n2-highmem-4"),
                software_config=dataproc_v1.SoftwareConfig(
                    image_version="3.0-debian12",
                    properties={f"spark:{k}": v for k, v in JOB_PROPERTIES.items()}),
                initialization_actions=[dataproc_v1.NodeInitializationAction(
                    executable_file="gs://braid-staging/jobs/braid/r1/install_braid.sh",
                    execution_timeout=duration_pb2.Duration(seconds=900))],
                lifecycle_config=dataproc_v1.LifecycleConfig(
                    idle_delete_ttl=duration_pb2.Duration(seconds=1800)))))
    assert fake.calls == [
        ("create", expected_cluster), ("wait create", 1500.0),
        ("submit", expected_job("markets", "m1", "backfill_trades.py",
                                [*ARGS, *RETENTION_ARGS, "--no-progress"])),
        ("wait job", 3600.0),
        ("submit", expected_job("sensors", "s1", "sensors_backfill.py", list(SENSORS.args))),
        ("wait job", 3600.0),
        ("delete", EXPECTED_DELETE), ("wait delete", 900.0),
    ]
    assert run.jobs == {"braid-markets-backfill-m1": "DONE", "braid-sensors-backfill-s1": "DONE"}
    assert run.deleted


def test_a_failed_job_stops_the_run_and_the_cluster_is_still_deleted() -> None:
    fake = FakeDataproc(job_states=("ERROR",))
    with pytest.raises(DataprocJobError, match="braid-markets-backfill-m1 ended ERROR"):
        ephemeral(fake, [MARKETS, SENSORS])
    assert [name for name, _ in fake.calls] == [
        "create", "wait create", "submit", "wait job", "delete", "wait delete"]
    assert fake.calls[-2] == ("delete", EXPECTED_DELETE)


def test_a_failed_creation_still_deletes_what_was_created() -> None:
    fake = FakeDataproc(create_error=RuntimeError("quota exceeded"))
    with pytest.raises(RuntimeError, match="quota exceeded"):
        ephemeral(fake, [MARKETS])
    assert [name for name, _ in fake.calls] == ["create", "wait create", "delete", "wait delete"]


def test_a_failed_deletion_after_a_failed_job_reports_the_job() -> None:
    fake = FakeDataproc(job_states=("ERROR",), delete_error=RuntimeError("delete failed"))
    with pytest.raises(DataprocJobError):
        ephemeral(fake, [MARKETS])
    assert fake.calls[-1] == ("wait delete", 900.0)


def test_the_sensors_job_covers_the_markets_days_and_offline_root() -> None:
    job = sensors_job(ARGS, "gs://braid-data/archive")
    assert (job.kind, job.args) == ("sensors", SENSORS.args)


def test_the_init_action_installs_ta_lib_the_pinned_packages_and_the_wheel() -> None:
    pins = {re.split(r"[=<>\[]", d)[0]: d for d in
            tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for package in CLUSTER_PACKAGES:
        assert pins[package.split("==")[0]] == package  # the pins of pyproject.toml
    script = init_action_script()
    assert "ta-lib==0.8.2" in script
    assert "get_metadata_value attributes/braid-wheel" in script
    assert re.search(r"pip install --no-cache-dir --no-deps \"/tmp/", script.replace("$PIP",
                                                                                       "pip"))


# ---- one place decides the Spark properties of every deployment -------------------------

JARS = ["/j/spark/delta-spark_4.2_2.13-4.4.0.jar", "/j/spark/hadoop-bare-naked-local-fs-0.1.0.jar",
        "/j/gcs/gcs-connector-4.0.4-shaded.jar"]


def test_local_and_standalone_sessions_get_the_jars_delta_and_the_gcs_connector() -> None:
    local = {**launch_properties(Deployment.LOCAL, JARS),
             **session_properties(Deployment.LOCAL, jars=JARS)}
    assert local["spark.jars"] == ",".join(JARS)
    assert local["spark.driver.extraClassPath"] == JARS[1]
    assert "spark.executor.extraClassPath" not in local
    assert local["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert local["spark.delta.logStore.gs.impl"] == "io.delta.storage.GCSLogStore"
    assert local["spark.hadoop.fs.gs.impl"] == \
        "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem"
    assert local["spark.hadoop.fs.gs.block.size"] == "67108864"  # Hadoop 3.5 says "64m"
    assert local["spark.hadoop.fs.gs.auth.type"] == "APPLICATION_DEFAULT"
    assert local["spark.hadoop.fs.file.impl"] == LOCAL_FS_CLASS
    standalone = launch_properties(Deployment.STANDALONE, JARS)
    assert standalone["spark.executor.extraClassPath"] == f"{JARS[1]}:{JARS[2]}"
    emulated = session_properties(Deployment.STANDALONE, jars=JARS,
                                  emulator="http://127.0.0.1:4443")
    assert {k: emulated[k] for k in emulated if "fs.gs.storage" in k or "auth" in k} == {
        "spark.hadoop.fs.gs.storage.root.url": "http://127.0.0.1:4443/",
        "spark.hadoop.fs.gs.auth.type": "UNAUTHENTICATED"}


def test_dataproc_gets_packages_and_keeps_its_own_gcs_connector_and_files() -> None:
    props = {**launch_properties(Deployment.DATAPROC, JARS),
             **session_properties(Deployment.DATAPROC, jars=JARS, emulator="http://x:1")}
    assert props == JOB_PROPERTIES


def test_local_sessions_use_the_fork_free_file_system_only_when_its_jar_is_fetched() -> None:
    """`hadoop-bare-naked-local-fs` (in infra/poms/spark.xml) goes on the local driver's
    classpath as `fs.file.impl`; without its jar nothing changes (Hadoop's own local FS)."""
    delta, fs_jar = JARS[0], JARS[1]
    assert local_fs_conf([delta]) == {}
    assert local_fs_conf([]) == {}
    assert local_fs_conf([delta, fs_jar]) == {
        "spark.driver.extraClassPath": fs_jar, "spark.hadoop.fs.file.impl": LOCAL_FS_CLASS}
    assert "spark.hadoop.fs.file.impl" not in session_properties(Deployment.LOCAL, jars=[delta])
    pom = (REPO / "infra" / "poms" / "spark.xml").read_text()
    assert "<artifactId>hadoop-bare-naked-local-fs</artifactId>" in pom
