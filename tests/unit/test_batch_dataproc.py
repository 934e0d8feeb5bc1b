"""The Dataproc submission request for the backfill (no network)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from batch.dataproc import (
    DataprocTarget,
    StagedCode,
    backfill_job_request,
    build_code_zip,
    delta_spark_package,
    submit_backfill,
)

TARGET = DataprocTarget("braid-prod", "europe-west1", "braid-batch", "gs://braid-staging/jobs")
CODE = StagedCode("gs://braid-staging/jobs/braid/t1/backfill_trades.py",
                  ("gs://braid-staging/jobs/braid/t1/braid_batch.zip",))
ARGS = ["--input", "gs://braid-data/trades/*.csv", "--start", "2018-05-08", "--end", "2018-05-10",
        "--pairs", "XBT/USD", "--output", "gs://braid-offline/markets"]


def test_request_targets_the_cluster_and_region_with_the_entry_point_and_code_zip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAID_DELTA_DELETED_FILE_RETENTION", raising=False)
    monkeypatch.setenv("BRAID_DELTA_LOG_RETENTION", "365d")
    request = backfill_job_request(TARGET, CODE, ARGS, job_id="backfill-1")
    assert request.project_id == "braid-prod"
    assert request.region == "europe-west1"
    job = request.job
    assert job.placement.cluster_name == "braid-batch"
    assert job.reference.job_id == "backfill-1"
    assert job.pyspark_job.main_python_file_uri == CODE.main_python_file_uri
    assert list(job.pyspark_job.python_file_uris) == list(CODE.python_file_uris)
    # the cluster has no BRAID_DELTA_* environment: the tables' retention travels as arguments
    assert list(job.pyspark_job.args) == [*ARGS, "--deleted-file-retention", "180d",
                                          "--log-retention", "365d", "--no-progress"]
    assert job.labels["app"] == "braid"
    given = [*ARGS, "--deleted-file-retention", "30d"]
    assert list(backfill_job_request(TARGET, CODE, given).job.pyspark_job.args) == [
        *given, "--no-progress"]


def test_request_brings_delta_spark_with_its_extension_and_catalog() -> None:
    properties = dict(backfill_job_request(TARGET, CODE, ARGS).job.pyspark_job.properties)
    packages = properties["spark.jars.packages"].split(",")
    assert delta_spark_package() in packages
    assert delta_spark_package().startswith("io.delta:delta-spark_4.2_2.13:4.")
    assert "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0" in packages
    assert properties["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert properties["spark.sql.catalog.spark_catalog"].endswith("DeltaCatalog")


def test_dataproc_packages_are_the_jars_the_local_runs_fetch() -> None:
    """The Maven coordinates Dataproc resolves equal infra/poms/spark.xml's (one source of
    versions for local runs and the cluster), and match the installed pyspark."""
    import xml.etree.ElementTree as ET

    import pyspark

    from batch.spark_session import SPARK_PACKAGES, SPARK_VERSION

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(Path(__file__).resolve().parents[2] / "infra" / "poms" / "spark.xml")
    root = pom.getroot()
    props = {el.tag.split("}")[1]: el.text for el in root.find("m:properties", ns) or []}
    declared = set()
    for dep in root.iterfind("m:dependencies/m:dependency", ns):
        group, artifact = dep.findtext("m:groupId", namespaces=ns), dep.findtext(
            "m:artifactId", namespaces=ns)
        version = (dep.findtext("m:version", namespaces=ns) or "")
        for key, value in props.items():
            version = version.replace("${" + key + "}", value or "")
        declared.add(f"{group}:{artifact}:{version}")
    assert set(SPARK_PACKAGES) <= declared
    assert pyspark.__version__ == SPARK_VERSION


def test_extra_properties_override_and_job_ids_are_unique_by_default() -> None:
    request = backfill_job_request(TARGET, CODE, ARGS,
                                   extra_properties={"spark.executor.memory": "8g"})
    assert request.job.pyspark_job.properties["spark.executor.memory"] == "8g"
    other = backfill_job_request(TARGET, CODE, ARGS)
    assert request.job.reference.job_id != other.job.reference.job_id


def test_staging_must_be_on_gcs() -> None:
    with pytest.raises(ValueError, match="gs://"):
        DataprocTarget("p", "r", "c", "/tmp/staging")


def test_code_zip_holds_features_and_batch_and_imports_standalone(tmp_path: Path) -> None:
    archive = build_code_zip(tmp_path / "braid_batch.zip")
    names = zipfile.ZipFile(archive).namelist()
    assert "batch/backfill_trades.py" in names
    assert "features/candles.py" in names
    assert not any(n.startswith(("streaming/", "cli/", "tests/")) for n in names)
    # As on Dataproc: only the zip on the path, run from elsewhere.
    probe = (
        "import batch.backfill, features.candles, sys;"
        "assert batch.backfill.__file__.startswith(sys.argv[1]), batch.backfill.__file__"
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
    assert sent[0].job.pyspark_job.main_python_file_uri == CODE.main_python_file_uri
    assert job.placement.cluster_name == "braid-batch"


def test_local_sessions_use_the_fork_free_file_system_only_when_its_jar_is_fetched() -> None:
    """`hadoop-bare-naked-local-fs` (in infra/poms/spark.xml) goes on the local driver's
    classpath as `fs.file.impl`; without its jar nothing changes (Hadoop's own local FS)."""
    from batch.spark_session import LOCAL_FS_CLASS, local_fs_conf

    delta = "/jars/delta-spark_4.2_2.13-4.4.0.jar"
    fs_jar = "/jars/hadoop-bare-naked-local-fs-0.1.0.jar"
    assert local_fs_conf([delta]) == {}
    assert local_fs_conf([]) == {}
    assert local_fs_conf([delta, fs_jar]) == {
        "spark.driver.extraClassPath": fs_jar, "spark.hadoop.fs.file.impl": LOCAL_FS_CLASS}
    pom = (Path(__file__).resolve().parents[2] / "infra" / "poms" / "spark.xml").read_text()
    assert "<artifactId>hadoop-bare-naked-local-fs</artifactId>" in pom
