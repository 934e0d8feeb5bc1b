"""A local Spark driver whose JVM writes to a log file instead of the user's terminal.

`SparkSession.builder.getOrCreate()` starts the driver JVM with the Python process's stdout and
stderr, so everything the JVM prints lands between a command's own lines: the JDK's "WARNING:
Using incubator modules" (Spark's launcher always adds that module), log4j's start-up notices,
"hostname resolves to a loopback address", "Unable to load native-hadoop library", the Spark UI's
port retries, and the stderr of every Python worker. For a local session Braid starts the JVM
itself (`pyspark.java_gateway.launch_gateway`, whose `popen_kwargs` exist for this) with its
output appended to a log file: `$BRAID_SPARK_LOG`, else `var/log/spark-driver.log` in the
checkout. Unless `SPARK_LOCAL_IP` is set (a standalone cluster's driver sets the address its
executors reach), it binds the driver to 127.0.0.1: a local session has no business on the
machine's external address. Under `spark-submit` (which starts the JVM itself) nothing changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

REPO = Path(__file__).resolve().parents[1]


def driver_log_path() -> Path:
    configured = os.environ.get("BRAID_SPARK_LOG")
    return Path(configured) if configured else REPO / "var" / "log" / "spark-driver.log"


def start_local_driver(options: dict[str, str]) -> None:
    """Start the local driver (a `SparkContext` with `options`) with the JVM's output in the
    driver log, unless a context is already running; a start failure names the log."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is not None:
        return
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = SparkConf().setAll(list(options.items()))
    path = driver_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        try:
            gateway = launch_gateway(conf, popen_kwargs={"stdout": out, "stderr": out})
        except Exception as error:
            tail = path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the Spark driver did not start: {' / '.join(tail)} "
                               f"(see {path})") from error
    SparkContext(conf=conf, gateway=gateway)
    log.info("spark driver started", master=options.get("spark.master"), log=str(path))
