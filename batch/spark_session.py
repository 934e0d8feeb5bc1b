"""The SparkSession a backfill runs in: local (tests, laptops) or whatever `spark-submit` set up.

Locally the session uses `local[N]`, few shuffle partitions, Arrow, and the current Python for
the workers (pandas/Arrow UDFs and Python data sources fail to import pyarrow otherwise). Under
`spark-submit --master yarn` (Dataproc) the master and the Python are the cluster's.

**Connectors.** delta-spark (the offline-store writer) and Spark's Kafka source are JVM jars.
Locally they come from the jar folder that `python -m infra.jars spark` fills from Maven Central
(`scripts/setup.sh` runs it): `$BRAID_SPARK_JARS` (a folder, or a comma-separated list of jar
files), else `$BRAID_JARS_DIR/spark`, else `var/jars/spark` at the repository root. They are
passed as `spark.jars` with Delta's SQL extension and catalog. On Dataproc (and with
`spark-submit --packages`) the same Maven coordinates, :data:`SPARK_PACKAGES`, are resolved by
Spark itself (`batch.dataproc` sets them). `batch/` does not import `infra/` (it ships to the
cluster as a zip), so the folder is found by convention, not by asking `infra.jars`.

**Local files.** Hadoop's local FileSystem, without Hadoop's native library (pyspark ships
none), forks `chmod` for every file and folder it creates: three processes per Parquet file of
a partitioned write (a 500-file write: 14.8 ms a file). A year backfill writes 8,760 partitions
per table, so a local session whose jar folder holds `hadoop-bare-naked-local-fs` (fetched with
the connectors) uses its `BareLocalFileSystem` for `file:` paths: the same local files through
Java's own file API, no processes (a year of candles as Delta: 82 s -> 31 s on 2 cores). It
must be on the driver's own classpath (Hadoop loads file systems before `spark.jars` is read),
so it goes in `spark.driver.extraClassPath`, which applies only when this call starts the JVM.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

DELTA_LOG_CLASS = "org.apache.spark.sql.delta.DeltaLog"
KAFKA_SOURCE_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
GCS_CONNECTOR_CLASS = "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem"

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
LOCAL_FS_JAR_PREFIX = "hadoop-bare-naked-local-fs-"
LOCAL_FS_CLASS = "com.globalmentor.apache.hadoop.fs.BareLocalFileSystem"
JARS_SETUP_HINT = "run `.venv/bin/python -m infra.jars spark` (scripts/setup.sh does it)"


class MissingConnectorError(RuntimeError):
    """A JVM connector (delta-spark, the Kafka source) is not on the session's classpath."""


def spark_jars_dir() -> Path:
    """The folder of the connector jars (`$BRAID_JARS_DIR/spark`, else `<repo>/var/jars/spark`)."""
    configured = os.environ.get("BRAID_JARS_DIR")
    repo = Path(__file__).resolve().parent.parent
    root = Path(configured) if configured else repo / "var" / "jars"
    return root / "spark"


def connector_jars() -> list[str]:
    """The local connector jars to pass as `spark.jars` (empty when none are installed)."""
    configured = os.environ.get("BRAID_SPARK_JARS")
    if configured:
        items = [s.strip() for s in configured.split(",") if s.strip()]
        if len(items) == 1 and Path(items[0]).is_dir():
            return sorted(str(p) for p in Path(items[0]).glob("*.jar"))
        return items
    folder = spark_jars_dir()
    return sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []


def local_fs_conf(jars: list[str]) -> dict[str, str]:
    """Spark properties that serve `file:` paths without forking processes (module docstring);
    empty when the jar is not among `jars`."""
    found = [j for j in jars if Path(j).name.startswith(LOCAL_FS_JAR_PREFIX)]
    if not found:
        return {}
    return {"spark.driver.extraClassPath": found[0], "spark.hadoop.fs.file.impl": LOCAL_FS_CLASS}


def spark_session(
    app_name: str = "braid-backfill",
    *,
    master: str | None = None,
    shuffle_partitions: int = 4,
) -> SparkSession:
    """Get (or create) the session; `master` applies only when no master is configured yet.

    A new local session gets the connector jars and Delta's SQL extension and catalog."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    configured_master = os.environ.get("MASTER") or _submitted_master()
    if configured_master is None:
        builder = builder.master(master or "local[2]")
        jars = connector_jars()
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
            for key, value in DELTA_SQL_CONF.items():
                builder = builder.config(key, value)
        for key, value in local_fs_conf(jars).items():
            builder = builder.config(key, value)
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        # replaceWhere on the partition columns only; no per-write stats collection job
        .config("spark.databricks.delta.replaceWhere.dataColumns.enabled", "false")
        # Delta rebuilds a table's state from its log in a shuffle of 50 partitions by default:
        # Braid's tables add tens of files a commit, and at 50 that step cost more than the
        # write (a backfill test: 42 s -> 18 s on 2 cores)
        .config("spark.databricks.delta.snapshotPartitions", str(shuffle_partitions))
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("BRAID_SPARK_LOG_LEVEL", "WARN"))
    return spark


def _submitted_master() -> str | None:
    """The master `spark-submit` passed (it exports it to the driver's conf), if any."""
    from pyspark import SparkConf

    value = SparkConf().get("spark.master", None)
    return value or None


def jvm_has_class(spark: SparkSession, class_name: str) -> bool:
    """Whether a JVM class loads in the session (a jar on the classpath, e.g. delta-spark)."""
    jvm = spark.sparkContext._jvm
    if jvm is None:
        return False
    try:
        jvm.java.lang.Class.forName(
            class_name, False, jvm.java.lang.Thread.currentThread().getContextClassLoader()
        )
    except Exception:
        return False
    return True


def delta_spark_available(spark: SparkSession) -> bool:
    """delta-spark's jars are on the classpath and its SQL extension is configured."""
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return "DeltaSparkSessionExtension" in extensions and jvm_has_class(spark, DELTA_LOG_CLASS)


def require_delta_spark(spark: SparkSession) -> None:
    """Raise :class:`MissingConnectorError` with the fix when delta-spark is not usable."""
    if not delta_spark_available(spark):
        raise MissingConnectorError(
            f"delta-spark ({DELTA_SPARK_PACKAGE}) is not on this Spark session's classpath or "
            f"its SQL extension is not set: {JARS_SETUP_HINT}, or pass "
            f"--packages {DELTA_SPARK_PACKAGE} with --conf spark.sql.extensions="
            f"{DELTA_SQL_CONF['spark.sql.extensions']} to spark-submit"
        )


def require_kafka_source(spark: SparkSession) -> None:
    """Raise :class:`MissingConnectorError` when Spark's Kafka source is not on the classpath."""
    if not jvm_has_class(spark, KAFKA_SOURCE_CLASS):
        raise MissingConnectorError(
            f"Spark's Kafka source ({SPARK_KAFKA_PACKAGE}) is not on this Spark session's "
            f"classpath: {JARS_SETUP_HINT}, or pass --packages {SPARK_KAFKA_PACKAGE} to "
            "spark-submit"
        )


def gcs_connector_available(spark: SparkSession) -> bool:
    """The Hadoop GCS connector is installed (Dataproc): `gs://` goes through Hadoop."""
    return jvm_has_class(spark, GCS_CONNECTOR_CLASS)
