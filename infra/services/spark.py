"""A Spark standalone cluster on this machine: a master and two workers, plain Java processes.

Each is a `java` process over the pyspark wheel's own jars, the command pyspark's
`bin/spark-class` would `exec` (no Spark download, no `start-master.sh`; started directly so
the PID file's command line is the running process's): `org.apache.spark.deploy.master.Master`
and two `org.apache.spark.deploy.worker.Worker spark://...`, each worker `spark_worker_cores`
cores and `spark_worker_memory` for executors. Everything binds to the stack's host
(`SPARK_LOCAL_IP`), so nothing advertises another interface. Jobs reach it with `--master spark://<host>:<port>`
(`StackSettings.spark_master_url`); `batch.spark_session` ships their connectors and code.

Not among the default services (`braid up --services spark-master,spark-worker-1,
spark-worker-2` starts it): the three daemons hold about 650 MiB before any executor runs.
Measured here: the master answers at once; a worker registers (ALIVE in the master's
`/json/`) about 10-30 s after its start on 2 busy cores.
"""

from __future__ import annotations

import json
import urllib.request
from functools import partial
from pathlib import Path

from infra.health import tcp_open
from infra.processes import MissingBinaryError
from infra.services.base import ServiceSpec
from infra.services.broker import java_binary
from infra.settings import StackSettings

MASTER = "spark-master"
WORKERS = ("spark-worker-1", "spark-worker-2")
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """The installed pyspark's folder (its `jars/` hold Spark)."""
    try:
        import pyspark
    except ImportError as exc:
        raise MissingBinaryError("pyspark is not installed (pip install pyspark==4.2.0)") from exc
    home = Path(pyspark.__file__).parent
    if not (home / "jars").is_dir():
        raise MissingBinaryError(f"{home / 'jars'} not found: reinstall pyspark==4.2.0")
    return home


def daemon_command(settings: StackSettings, main_class: str, *args: str) -> list[str]:
    """`java` running a Spark daemon, as `bin/spark-class` builds it."""
    home = spark_home()
    return [java_binary(), "-cp", f"{home / 'conf'}/:{home / 'jars'}/*",
            f"-Xmx{settings.spark_daemon_heap}", "-Dspark.master.rest.enabled=false",
            main_class, *args]


def _env(settings: StackSettings) -> dict[str, str]:
    return {
        # what bin/load-spark-env.sh exports: workers build executor commands from them
        "SPARK_HOME": str(spark_home()),
        "SPARK_SCALA_VERSION": "2.13",
        "SPARK_LOCAL_IP": settings.host,
    }


def master_ui(settings: StackSettings) -> str:
    return f"http://{settings.host}:{settings.spark_master_ui_port}"


def alive_worker_ports(settings: StackSettings, timeout_s: float = 1.0) -> set[int]:
    """Ports of the workers the master lists as ALIVE (its `/json/` status)."""
    try:
        with urllib.request.urlopen(f"{master_ui(settings)}/json/", timeout=timeout_s) as resp:
            status = json.load(resp)
    except (OSError, ValueError):
        return set()
    return {int(w["port"]) for w in status.get("workers", []) if w.get("state") == "ALIVE"}


def master_spec(settings: StackSettings) -> ServiceSpec:
    return ServiceSpec(
        name=MASTER,
        # no REST submission server (spark.master.rest.enabled: it takes the fixed port 6066)
        argv=daemon_command(settings, MASTER_CLASS, "--host", settings.host,
                            "--port", str(settings.spark_master_port),
                            "--webui-port", str(settings.spark_master_ui_port)),
        host=settings.host,
        port=settings.spark_master_port,
        health=partial(tcp_open, settings.host, settings.spark_master_port),
        env=_env(settings),
        extra_ports=(settings.spark_master_ui_port,),
    )


def worker_spec(settings: StackSettings, index: int) -> ServiceSpec:
    """Worker `index` (1 or 2): healthy once the master lists it ALIVE."""
    name = WORKERS[index - 1]
    port = settings.spark_worker_ports[index - 1]
    work_dir = (settings.data_dir / name).resolve()

    def prepare() -> None:
        work_dir.mkdir(parents=True, exist_ok=True)

    return ServiceSpec(
        name=name,
        argv=daemon_command(settings, WORKER_CLASS, settings.spark_master_url,
                            "--host", settings.host, "--port", str(port), "--webui-port", "0",
                            "--cores", str(settings.spark_worker_cores),
                            "--memory", settings.spark_worker_memory,
                            "--work-dir", str(work_dir)),
        host=settings.host,
        port=port,
        health=lambda: port in alive_worker_ports(settings),
        env=_env(settings),
        requires=(MASTER,),
        prepare=prepare,
    )
