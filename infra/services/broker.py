"""The Kafka broker: Apache Kafka (KRaft, one node acting as broker and controller).

Its jars come from Maven Central (`infra/poms/kafka.xml`, fetched once by `infra.jars`); it runs
as a plain Java process on 127.0.0.1 with a small heap. Its log directory lives under the stack's
data dir and is formatted once (`kafka.tools.StorageTool format`), so topics and messages survive
broker restarts, including `kill -9` (every acknowledged record is in the log files).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from functools import partial
from pathlib import Path

import structlog

from infra import jars
from infra.health import idempotent_producer_ready, kafka_metadata
from infra.processes import MissingBinaryError, ServiceError
from infra.services.base import ServiceSpec
from infra.settings import StackSettings

log = structlog.get_logger(__name__)

NAME = "broker"
BUNDLE = "kafka"
LOG4J_CONFIG = Path(__file__).resolve().parent.parent / "kafka" / "log4j2.properties"
NODE_ID = 1


def java_binary() -> str:
    """`$JAVA_HOME/bin/java`, else `java` on PATH (Kafka 4 needs Java 17 or newer)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise MissingBinaryError(
            "broker: Java 17+ is needed to run Apache Kafka: "
            "sudo apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"
        )
    return str(Path(found).resolve())


def kafka_dir(settings: StackSettings) -> Path:
    return settings.data_dir / "kafka"


def log_dirs(settings: StackSettings) -> Path:
    """The broker's log directory (topic partitions and the metadata log)."""
    return kafka_dir(settings) / "logs"


def config_path(settings: StackSettings) -> Path:
    return kafka_dir(settings) / "server.properties"


def server_properties(settings: StackSettings) -> dict[str, str]:
    """The broker's configuration: one KRaft node, plaintext on 127.0.0.1, no auto-created topics.

    Internal topics get one replica; `group.initial.rebalance.delay.ms=0` lets a group's first
    member start at once; a short broker session lets a crashed broker rejoin in seconds; the
    log cleaner checks every second so compaction is seen locally.
    """
    host = settings.host
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{settings.controller_port}",
        "listeners": f"PLAINTEXT://{host}:{settings.broker_port},"
                     f"CONTROLLER://{host}:{settings.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{settings.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs(settings).resolve()),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # after a kill -9 the controller fences the old incarnation when its session expires:
        # the default 9 s delays every crash restart by that much. 2 s was too short: on a
        # loaded 2-core machine the controller timed out the broker's own heartbeat ("controller
        # event queue overloaded") and fenced it, leaving new topics without a leader.
        "broker.session.timeout.ms": "6000",
        "broker.heartbeat.interval.ms": "1000",
        "log.cleaner.backoff.ms": "1000",
        "log.retention.check.interval.ms": "10000",
    }


def _write_config(settings: StackSettings) -> Path:
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={value}" for key, value in server_properties(settings).items()]
    path.write_text("# written by infra/services/broker.py at each start\n" + "\n".join(lines)
                    + "\n")
    return path


def _classpath() -> str:
    return str(jars.bundle_dir(BUNDLE) / "*")


def is_formatted(settings: StackSettings) -> bool:
    return (log_dirs(settings) / "meta.properties").is_file()


def _cluster_id() -> str:
    """A random cluster id as Kafka writes one (url-safe base64 of 16 bytes), never starting with
    `-`: the storage tool would read it as an option (1 start in 64 failed), and Kafka's own
    `Uuid.randomUuid` draws again in that case too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def prepare(settings: StackSettings) -> None:
    """Fetch the jars if missing, write the config, format the log directory once."""
    jars.ensure(BUNDLE)
    config = _write_config(settings)
    if is_formatted(settings):
        return
    cluster_id = _cluster_id()
    argv = [
        java_binary(), f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", _classpath(),
        "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "--config", str(config),
        "--ignore-formatted",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise ServiceError(f"broker: formatting {log_dirs(settings)} failed:\n{tail}")
    log.info("kafka storage formatted", log_dirs=str(log_dirs(settings)), cluster_id=cluster_id)


def spec(settings: StackSettings) -> ServiceSpec:
    """Apache Kafka on `broker_port` (controller on `controller_port`), heap `broker_heap`."""
    argv = [
        java_binary(),
        f"-Xms{settings.broker_heap}", f"-Xmx{settings.broker_heap}",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", _classpath(),
        "kafka.Kafka", str(config_path(settings).resolve()),
    ]
    return ServiceSpec(
        name=NAME,
        argv=argv,
        host=settings.host,
        port=settings.broker_port,
        health=partial(
            kafka_metadata, settings.bootstrap_servers, settings.host, settings.broker_port
        ),
        prepare=partial(prepare, settings),
        after_start=partial(wait_for_producer_ids, settings),
        extra_ports=(settings.controller_port,),
    )


def wait_for_producer_ids(settings: StackSettings) -> None:
    """Return once the broker hands out producer ids (`health.idempotent_producer_ready`):
    every Braid producer is idempotent, and the first one otherwise logs librdkafka's
    "Coordinator load in progress" retries."""
    if not idempotent_producer_ready(settings.bootstrap_servers, settings.health_timeout_s):
        raise ServiceError(f"{NAME}: no producer id from {settings.bootstrap_servers} within "
                           f"{settings.health_timeout_s:.0f} s (see its log)")
