"""The SparkSession a backfill runs in: local (tests, laptops) or whatever `spark-submit` set up.

Locally the session uses `local[N]`, few shuffle partitions, Arrow, and the current Python for
the workers (pandas/Arrow UDFs and Python data sources fail to import pyarrow otherwise). Under
`spark-submit --master yarn` (Dataproc) the master and the Python are the cluster's.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

DELTA_LOG_CLASS = "org.apache.spark.sql.delta.DeltaLog"
GCS_CONNECTOR_CLASS = "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem"


def spark_session(
    app_name: str = "braid-backfill",
    *,
    master: str | None = None,
    shuffle_partitions: int = 4,
) -> SparkSession:
    """Get (or create) the session; `master` applies only when no master is configured yet."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    configured_master = os.environ.get("MASTER") or _submitted_master()
    if configured_master is None:
        builder = builder.master(master or "local[2]")
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
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


def gcs_connector_available(spark: SparkSession) -> bool:
    """The Hadoop GCS connector is installed (Dataproc): `gs://` goes through Hadoop."""
    return jvm_has_class(spark, GCS_CONNECTOR_CLASS)
