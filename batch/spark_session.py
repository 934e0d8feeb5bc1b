"""The SparkSession a Braid job runs in: local, on a standalone cluster, or on Dataproc.

`spark_session` is the only way Braid's jobs get a session, and `batch.spark_conf` decides every
property for each deployment (`local[N]`, `spark://`, Dataproc's `yarn`): the connectors
(delta-spark, the Kafka source, Hadoop's GCS connector), Delta's SQL extension, catalog and GCS
log store, the GCS emulator when `STORAGE_EMULATOR_HOST` is set, the fork-free local file
system, and the session tuning. Then the code: on a standalone cluster the executors get
`features/` and `batch/` as a zip (`SparkContext.addPyFile`, `batch.code_zip`); locally they
share this interpreter's; on Dataproc the job ships the zip itself.

Under `spark-submit` the JVM is already running when this is called: what must be there at JVM
start (the jars, the driver's classpath) comes from `--properties-file var/jars/spark.properties`
(`python -m batch.spark_conf` writes it; Dataproc's job request carries the same), everything
else is set here. Without delta-spark on the classpath a job stops before reading anything with
:class:`MissingConnectorError`, naming that file.

`batch/` does not import `infra/` (it ships to the cluster as a zip): the jar folder is found by
convention (`$BRAID_JARS_DIR`, else `var/jars`), not by asking `infra.jars`.
"""

from __future__ import annotations

import os
import sys

import structlog
from pyspark.sql import SparkSession

from batch.code_zip import code_zip_for_this_process, running_from_zip
from batch.spark_conf import (
    DELTA_SPARK_PACKAGE,
    DELTA_SQL_CONF,
    JARS_SETUP_HINT,
    SPARK_KAFKA_PACKAGE,
    Deployment,
    deployment_of,
    launch_properties,
    properties_file_path,
    session_properties,
)
from batch.spark_console import start_local_driver

log = structlog.get_logger(__name__)

DELTA_LOG_CLASS = "org.apache.spark.sql.delta.DeltaLog"
KAFKA_SOURCE_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
GCS_CONNECTOR_CLASS = "com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem"
DEFAULT_MASTER = "local[2]"
CLASSPATH_DEPENDENT = frozenset({
    "spark.hadoop.fs.file.impl",
    "spark.hadoop.fs.gs.impl",
    "spark.hadoop.fs.AbstractFileSystem.gs.impl",
})


class MissingConnectorError(RuntimeError):
    """A JVM connector (delta-spark, the Kafka source) is not on the session's classpath."""


def spark_session(
    app_name: str = "braid-backfill",
    *,
    master: str | None = None,
    shuffle_partitions: int = 4,
) -> SparkSession:
    """Get (or create) the session for `master` (`local[N]`, `spark://...`).

    A master already configured (`spark-submit --master`, `$MASTER`) wins over `master`, as
    does an existing session. Properties: `batch.spark_conf`; code shipping: module docstring.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    submitted = os.environ.get("MASTER") or _submitted_master()
    chosen = submitted or master or DEFAULT_MASTER
    deployment = deployment_of(chosen)
    if deployment is Deployment.STANDALONE and _is_loopback(_host_of(chosen)):
        # a cluster on this machine's loopback: executors connect back to the driver there (a
        # remote master: Spark's own choice of this host's address, or SPARK_LOCAL_IP)
        os.environ.setdefault("SPARK_LOCAL_IP", _host_of(chosen))
    builder = SparkSession.builder.appName(app_name)
    properties = session_properties(deployment, shuffle_partitions=shuffle_partitions,
                                    emulator=os.environ.get("STORAGE_EMULATOR_HOST"))
    if submitted is None:
        builder = builder.master(chosen)
        properties = {**launch_properties(deployment), **properties}
    else:
        # file systems whose jars only a launch property brings (the properties file gives
        # both, or neither: then Hadoop's defaults, not a class that cannot load)
        properties = {k: v for k, v in properties.items() if k not in CLASSPATH_DEPENDENT}
    if deployment is Deployment.STANDALONE and "SPARK_LOCAL_IP" in os.environ:
        # the executors connect to this address, and the driver listens on it
        properties.setdefault("spark.driver.host", os.environ["SPARK_LOCAL_IP"])
        properties.setdefault("spark.driver.bindAddress", os.environ["SPARK_LOCAL_IP"])
    for key, value in properties.items():
        builder = builder.config(key, value)
    if submitted is None:  # this process starts the driver JVM: its output to a log file
        start_local_driver({"spark.app.name": app_name, "spark.master": chosen, **properties})
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("BRAID_SPARK_LOG_LEVEL", "WARN"))
    _apply_hadoop_settings(spark, properties)
    if deployment is Deployment.STANDALONE and not running_from_zip():
        _ship_code(spark)
    return spark


def _apply_hadoop_settings(spark: SparkSession, properties: dict[str, str]) -> None:
    """The `spark.hadoop.*` settings on the context's Hadoop configuration as well: a session
    that already existed (another job of this process) keeps its start-time values otherwise,
    e.g. a GCS emulator set since."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in properties.items():
        if key.startswith("spark.hadoop."):
            conf.set(key[len("spark.hadoop."):], value)


_SHIPPED: set[int] = set()


def _ship_code(spark: SparkSession) -> None:
    """`features/` + `batch/` as a zip to the executors, once per SparkContext."""
    context = spark.sparkContext
    if id(context) in _SHIPPED:
        return
    archive = code_zip_for_this_process()
    context.addPyFile(str(archive))
    _SHIPPED.add(id(context))
    log.info("code shipped to the executors", zip=str(archive))


def _is_loopback(host: str) -> bool:
    """Whether `host` resolves to a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _host_of(master: str) -> str:
    """The host of `spark://host:port` (the interface the driver should listen on)."""
    rest = master.split("://", 1)[1].split(",")[0]
    return rest.rsplit(":", 1)[0]


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
            f"its SQL extension is not set: {JARS_SETUP_HINT}, and give spark-submit "
            f"--properties-file {properties_file_path()} (or --packages {DELTA_SPARK_PACKAGE} "
            f"--conf spark.sql.extensions={DELTA_SQL_CONF['spark.sql.extensions']})"
        )


def require_kafka_source(spark: SparkSession) -> None:
    """Raise :class:`MissingConnectorError` when Spark's Kafka source is not on the classpath."""
    if not jvm_has_class(spark, KAFKA_SOURCE_CLASS):
        raise MissingConnectorError(
            f"Spark's Kafka source ({SPARK_KAFKA_PACKAGE}) is not on this Spark session's "
            f"classpath: {JARS_SETUP_HINT}, and give spark-submit --properties-file "
            f"{properties_file_path()} (or --packages {SPARK_KAFKA_PACKAGE})"
        )


def gcs_connector_available(spark: SparkSession) -> bool:
    """Hadoop's GCS connector is on the classpath (the `gcs` jar bundle, or Dataproc's):
    `gs://` goes through Hadoop."""
    return jvm_has_class(spark, GCS_CONNECTOR_CLASS)
