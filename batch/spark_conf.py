"""Every Spark property a Braid job needs, decided in one place for every place it runs.

A job runs on one of three deployments, told apart by its master:

- `local` (`local[N]`): connectors from the jars of `var/jars/{spark,gcs}` (`spark.jars`);
  the code is this interpreter's.
- `standalone` (`spark://host:port`): the same jars, also on the executors' classpath; the code
  goes to the executors as a zip of `features/` + `batch/` (`addPyFile`, `batch.spark_session`).
- `dataproc` (`yarn`): the connectors as Maven coordinates (`spark.jars.packages`), `gs://`
  through the image's own GCS connector; the code is the job's `python_file_uris` zip.

For all three: Delta's SQL extension and catalog, Delta's GCS log store for `gs://` (a commit
is a create-if-absent of the version file: GCS preconditions, no lock, no race), and the same
session tuning. Two groups of properties:

- :func:`launch_properties`: what must be there when the JVM starts (jars, the driver's
  classpath). `spark_session` passes them when it starts the JVM itself; under `spark-submit`
  they come from the properties file :func:`write_properties_file` generates beside the jars
  (`spark-submit --properties-file var/jars/spark.properties ...`), and on Dataproc from the
  job request (`batch.dataproc`).
- :func:`session_properties`: what a session may set as it is created (SQL extensions, Hadoop
  file-system settings, tuning), applied by `spark_session` in every case.

**Hadoop's GCS connector** (`com.google.cloud.bigdataoss:gcs-connector:4.0.4:shaded`, the
`gcs` jar bundle) serves `gs://` locally and on a standalone cluster. Spark 4.2's Hadoop 3.5
declares defaults for its own (different) GCS connector with size suffixes ("64m") that the
Google connector reads as plain numbers and fails on (`NumberFormatException: For input
string: "64m"`): :data:`GCS_NUMERIC_DEFAULTS` restates them as numbers. With
`STORAGE_EMULATOR_HOST` set (the local emulator, `infra/services/gcs.py`), the connector talks
to it unauthenticated (`fs.gs.storage.root.url`), renames by copy and delete (the emulator has
no `objects.move`), and uploads small files in one request (the emulator enforces
`ifGenerationMatch` on those, not on resumable uploads; GCS enforces it on both).

**Local files.** Hadoop's local FileSystem, without Hadoop's native library (pyspark ships
none), forks `chmod` for every file and folder it creates (three processes per Parquet file of a
partitioned write, ~15 ms a file). When the jar folder holds `hadoop-bare-naked-local-fs`, local
and standalone sessions use its `BareLocalFileSystem` for `file:` paths: the same local files
through Java's own file API (a year of candles as Delta: 82 s -> 31 s on 2 cores). Hadoop loads
file systems before `spark.jars` is read, so it goes on the driver's (and the executors')
classpath.

This module imports nothing from Spark: `batch.dataproc` and the properties file use it without
a JVM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

SCALA_BINARY = "2.13"
SPARK_VERSION = "4.2.0"
DELTA_JAR_VERSION = "4.4.0"
"""delta-spark's jar version. The pip package is 4.4.1, but Maven Central serves no
`delta-spark_4.2_2.13:4.4.1` (4.4.0 is its newest); `infra/poms/spark.xml` pins the same."""
DELTA_SPARK_PACKAGE = f"io.delta:delta-spark_4.2_{SCALA_BINARY}:{DELTA_JAR_VERSION}"
SPARK_KAFKA_PACKAGE = f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{SPARK_VERSION}"
SPARK_PACKAGES = (DELTA_SPARK_PACKAGE, SPARK_KAFKA_PACKAGE)
DELTA_SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
GCS_LOG_STORE = {"spark.delta.logStore.gs.impl": "io.delta.storage.GCSLogStore"}
"""Delta's log store for `gs://` (its default for the scheme, stated so it is visible)."""

LOCAL_FS_JAR_PREFIX = "hadoop-bare-naked-local-fs-"
LOCAL_FS_CLASS = "com.globalmentor.apache.hadoop.fs.BareLocalFileSystem"
GCS_CONNECTOR_JAR_PREFIX = "gcs-connector-"
GCS_FILE_SYSTEM_CLASS = "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem"
GCS_ABSTRACT_FILE_SYSTEM_CLASS = "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFS"
GCS_NUMERIC_DEFAULTS = {
    "fs.gs.block.size": str(64 << 20),
    "fs.gs.inputstream.inplace.seek.limit": str(8 << 20),
    "fs.gs.inputstream.min.range.request.size": str(2 << 20),
    "fs.gs.outputstream.buffer.size": str(8 << 20),
    "fs.gs.rewrite.max.chunk.size": str(512 << 20),
}
"""Hadoop 3.5's core-default.xml values of these keys ("64m", "8m", ...) as plain numbers."""
JAR_BUNDLES = ("spark", "gcs")
"""The jar folders under the jars dir a local or standalone session loads."""
PROPERTIES_FILE = "spark.properties"
JARS_SETUP_HINT = "run `.venv/bin/python -m infra.jars` (scripts/setup.sh does it)"


class Deployment(StrEnum):
    LOCAL = "local"
    STANDALONE = "standalone"
    DATAPROC = "dataproc"


def deployment_of(master: str) -> Deployment:
    """`local[N]` -> local, `spark://...` -> standalone, anything else (`yarn`) -> dataproc."""
    if master.startswith("local"):
        return Deployment.LOCAL
    if master.startswith("spark://"):
        return Deployment.STANDALONE
    return Deployment.DATAPROC


def jars_dir() -> Path:
    """The jar cache: `$BRAID_JARS_DIR`, else `<repo>/var/jars` (`infra.jars` fills it)."""
    configured = os.environ.get("BRAID_JARS_DIR")
    repo = Path(__file__).resolve().parent.parent
    return Path(configured) if configured else repo / "var" / "jars"


def local_jars() -> list[str]:
    """The connector jars for `spark.jars`: `$BRAID_SPARK_JARS` (a folder, or a comma-separated
    list of jar files) if set, else every jar of the `spark` and `gcs` bundles present."""
    configured = os.environ.get("BRAID_SPARK_JARS")
    if configured:
        items = [s.strip() for s in configured.split(",") if s.strip()]
        if len(items) == 1 and Path(items[0]).is_dir():
            return sorted(str(p) for p in Path(items[0]).glob("*.jar"))
        return items
    jars: list[str] = []
    for bundle in JAR_BUNDLES:
        folder = jars_dir() / bundle
        if folder.is_dir():
            jars.extend(sorted(str(p) for p in folder.glob("*.jar")))
    return jars


def _named(jars: Sequence[str], prefix: str) -> str | None:
    found = [j for j in jars if Path(j).name.startswith(prefix)]
    return found[0] if found else None


def local_fs_conf(jars: Sequence[str]) -> dict[str, str]:
    """The fork-free local file system (module docstring) on the driver; empty when its jar is
    not among `jars`."""
    jar = _named(jars, LOCAL_FS_JAR_PREFIX)
    if jar is None:
        return {}
    return {"spark.driver.extraClassPath": jar, "spark.hadoop.fs.file.impl": LOCAL_FS_CLASS}


def launch_properties(deployment: Deployment, jars: Sequence[str] | None = None) -> dict[str, str]:
    """What must be set when the JVM starts: the connectors (jars or Maven packages) and the
    classpath entries Hadoop needs before `spark.jars` is read."""
    if deployment is Deployment.DATAPROC:
        return {"spark.jars.packages": ",".join(SPARK_PACKAGES)}
    jars = local_jars() if jars is None else list(jars)
    if not jars:
        return {}
    props = {"spark.jars": ",".join(jars)}
    local_fs = _named(jars, LOCAL_FS_JAR_PREFIX)
    if local_fs is not None:
        props["spark.driver.extraClassPath"] = local_fs
    if deployment is Deployment.STANDALONE:
        # Hadoop file systems load before an executor adds `spark.jars`; the workers of
        # `infra`'s standalone cluster share this machine's jar folder
        early = [j for j in (local_fs, _named(jars, GCS_CONNECTOR_JAR_PREFIX)) if j is not None]
        if early:
            props["spark.executor.extraClassPath"] = os.pathsep.join(early)
    return props


def gcs_properties(deployment: Deployment, jars: Sequence[str] | None = None,
                   emulator: str | None = None) -> dict[str, str]:
    """Hadoop's GCS connector for `gs://` (module docstring). Dataproc configures its own."""
    if deployment is Deployment.DATAPROC:
        return {}
    jars = local_jars() if jars is None else list(jars)
    if _named(jars, GCS_CONNECTOR_JAR_PREFIX) is None:
        return {}
    conf = {
        "fs.gs.impl": GCS_FILE_SYSTEM_CLASS,
        "fs.AbstractFileSystem.gs.impl": GCS_ABSTRACT_FILE_SYSTEM_CLASS,
        **GCS_NUMERIC_DEFAULTS,
    }
    if emulator:
        conf |= {
            "fs.gs.storage.root.url": emulator.rstrip("/") + "/",
            "fs.gs.auth.type": "UNAUTHENTICATED",
            "fs.gs.project.id": os.environ.get("GOOGLE_CLOUD_PROJECT", "braid-local"),
            "fs.gs.operation.move.enable": "false",
            "fs.gs.outputstream.direct.upload.enable": "true",
        }
    else:
        # GOOGLE_APPLICATION_CREDENTIALS, gcloud's login, or the VM's service account
        conf["fs.gs.auth.type"] = "APPLICATION_DEFAULT"
    return {f"spark.hadoop.{key}": value for key, value in conf.items()}


def session_properties(
    deployment: Deployment,
    *,
    shuffle_partitions: int = 4,
    jars: Sequence[str] | None = None,
    emulator: str | None = None,
) -> dict[str, str]:
    """What a session sets as it is created: Delta's SQL extension and catalog and GCS log
    store, the GCS connector's and the local file system's Hadoop settings, and tuning."""
    if deployment is Deployment.DATAPROC:
        jars = []
    elif jars is None:
        jars = local_jars()
    props: dict[str, str] = {}
    if jars or deployment is Deployment.DATAPROC:
        props |= DELTA_SQL_CONF | GCS_LOG_STORE
    props |= gcs_properties(deployment, jars, emulator)
    if deployment is not Deployment.DATAPROC and _named(jars, LOCAL_FS_JAR_PREFIX):
        props["spark.hadoop.fs.file.impl"] = LOCAL_FS_CLASS
    props |= {
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # replaceWhere on the partition columns only; no per-write stats collection job
        "spark.databricks.delta.replaceWhere.dataColumns.enabled": "false",
        # Delta rebuilds a table's state from its log in a shuffle of 50 partitions by default:
        # Braid's tables add tens of files a commit, and at 50 that step cost more than the
        # write (a backfill test: 42 s -> 18 s on 2 cores)
        "spark.databricks.delta.snapshotPartitions": str(shuffle_partitions),
    }
    return props


def spark_properties(
    deployment: Deployment,
    *,
    shuffle_partitions: int = 4,
    jars: Sequence[str] | None = None,
    emulator: str | None = None,
) -> dict[str, str]:
    """Launch and session properties together (a session that starts its own JVM, a Dataproc
    job)."""
    return {
        **launch_properties(deployment, jars),
        **session_properties(deployment, shuffle_partitions=shuffle_partitions, jars=jars,
                             emulator=emulator),
    }


def properties_file_path() -> Path:
    """Where the properties file for `spark-submit` lives: beside the jar bundles."""
    return jars_dir() / PROPERTIES_FILE


def properties_text(jars: Sequence[str] | None = None) -> str:
    """The properties file's content: what a local (or this machine's standalone) run needs,
    in `spark-defaults.conf` format. Emulator settings are not in it: `spark_session` adds
    them from `STORAGE_EMULATOR_HOST` when the job's session starts."""
    props = spark_properties(Deployment.STANDALONE, jars=jars)
    lines = [
        "# Generated by `python -m batch.spark_conf` (scripts/setup.sh runs it after the jar",
        "# fetch): spark-submit --properties-file var/jars/spark.properties batch/<job>.py ...",
        *(f"{key} {value}" for key, value in sorted(props.items())),
    ]
    return "\n".join(lines) + "\n"


def write_properties_file(path: Path | None = None) -> Path:
    """Write the properties file (only when its content changed); returns its path."""
    jars = local_jars()
    if not any(Path(j).name.startswith("delta-spark") for j in jars):
        raise FileNotFoundError(f"no delta-spark jar under {jars_dir()}: {JARS_SETUP_HINT}")
    target = path or properties_file_path()
    text = properties_text(jars)
    if not target.is_file() or target.read_text() != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{os.getpid()}")
        staging.write_text(text)
        staging.replace(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m batch.spark_conf",
        description="Write the properties file spark-submit needs for Braid's jobs "
        "(connector jars, Delta, the GCS connector, the local file system) beside the jars.",
    )
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write it (default: {properties_file_path()})")
    args = parser.parse_args(argv)
    try:
        print(write_properties_file(args.output))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
