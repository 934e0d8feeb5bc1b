"""The Kafka broker: Apache Kafka in KRaft mode, one node or a cluster of N
(`BRAID_STACK_BROKER_NODES`), each node a broker and a controller in one process.

Its jars come from Maven Central (`infra/poms/kafka.xml`, fetched once by `infra.jars`); each
node runs as a plain Java process on 127.0.0.1 with a small heap. Its log directory lives under
the stack's data dir and is formatted once (`kafka.tools.StorageTool format`, every node with the
cluster's id), so topics and messages survive restarts, including `kill -9` (every acknowledged
record is in the log files: of every in-sync replica, in a cluster).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path

import structlog

from infra import jars
from infra.health import idempotent_producer_ready, kafka_metadata
from infra.processes import MissingBinaryError, ServiceError
from infra.services.base import ServiceSpec
from infra.settings import KafkaNode, StackSettings

log = structlog.get_logger(__name__)

NAME = "broker"
BUNDLE = "kafka"
LOG4J_CONFIG = Path(__file__).resolve().parent.parent / "kafka" / "log4j2.properties"
CLUSTER_FILE = "cluster.json"
_SHARED_STEPS = threading.Lock()


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


def process_name(settings: StackSettings, node: KafkaNode) -> str:
    """`broker` for a single node; `broker-1`, `broker-2` ... for the nodes of a cluster."""
    return NAME if settings.broker_nodes == 1 else f"{NAME}-{node.node_id}"


def process_names(settings: StackSettings) -> list[str]:
    return [process_name(settings, node) for node in settings.kafka_nodes()]


def node(settings: StackSettings, node_id: int) -> KafkaNode:
    """Node `node_id` (1-based) of the configured cluster."""
    nodes = settings.kafka_nodes()
    if not 1 <= node_id <= len(nodes):
        raise ValueError(f"no Kafka node {node_id}: the stack runs {len(nodes)}")
    return nodes[node_id - 1]


def kafka_dir(settings: StackSettings) -> Path:
    return settings.data_dir / "kafka"


def node_dir(settings: StackSettings, kafka_node: KafkaNode | None = None) -> Path:
    """A node's folder: `kafka/` itself for a single node, `kafka/node-<n>/` in a cluster."""
    if settings.broker_nodes == 1:
        return kafka_dir(settings)
    return kafka_dir(settings) / f"node-{(kafka_node or node(settings, 1)).node_id}"


def log_dirs(settings: StackSettings, kafka_node: KafkaNode | None = None) -> Path:
    """A node's log directory (topic partitions and the metadata log); default node 1."""
    return node_dir(settings, kafka_node) / "logs"


def config_path(settings: StackSettings, kafka_node: KafkaNode | None = None) -> Path:
    return node_dir(settings, kafka_node) / "server.properties"


def server_properties(settings: StackSettings,
                      kafka_node: KafkaNode | None = None) -> dict[str, str]:
    """A node's configuration: broker and KRaft controller in one process, every node a voter of
    the controller quorum, plaintext on 127.0.0.1, no auto-created topics.

    Replication follows the node count N: topics created without an explicit replication factor
    (Braid's, by default) and the internal ones get min(3, N) replicas and `min.insync.replicas`
    min(2, N), so an acks=all write survives the loss of any one node of three; no unclean
    leader election (a replica out of the ISR never becomes leader, so nothing acknowledged is
    lost). `group.initial.rebalance.delay.ms=0` lets a group's first member start at once; a
    short broker session lets a crashed node rejoin in seconds; the log cleaner checks every
    second so compaction is seen locally.
    """
    host = settings.host
    this = kafka_node or node(settings, 1)
    voters = ",".join(f"{n.node_id}@{host}:{n.controller_port}" for n in settings.kafka_nodes())
    replicas, min_isr = str(settings.replication_factor), str(settings.min_insync_replicas)
    return {
        "process.roles": "broker,controller",
        "node.id": str(this.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{this.port},CONTROLLER://{host}:{this.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{this.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs(settings, this).resolve()),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
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


def _write_config(settings: StackSettings, kafka_node: KafkaNode) -> Path:
    path = config_path(settings, kafka_node)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={value}" for key, value in server_properties(settings, kafka_node).items()]
    path.write_text("# written by infra/services/broker.py at each start\n" + "\n".join(lines)
                    + "\n")
    return path


def _classpath() -> str:
    return str(jars.bundle_dir(BUNDLE) / "*")


def is_formatted(settings: StackSettings, kafka_node: KafkaNode | None = None) -> bool:
    return (log_dirs(settings, kafka_node) / "meta.properties").is_file()


def _new_cluster_id() -> str:
    """A random cluster id as Kafka writes one (url-safe base64 of 16 bytes), never starting with
    `-`: the storage tool would read it as an option (1 start in 64 failed), and Kafka's own
    `Uuid.randomUuid` draws again in that case too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _cluster_id(settings: StackSettings) -> str:
    """The id every node of this state dir's cluster is formatted with (`kafka/cluster.json`,
    written by the first format). A folder formatted for another node count is refused: its
    voters, replicas and internal topics were made for that count."""
    path = kafka_dir(settings) / CLUSTER_FILE
    legacy = kafka_dir(settings) / "logs" / "meta.properties"
    recorded: dict[str, object] = json.loads(path.read_text()) if path.is_file() else {}
    if not recorded and legacy.is_file():  # a single node formatted before clusters existed
        ids = [line.split("=", 1)[1].strip() for line in legacy.read_text().splitlines()
               if line.startswith("cluster.id=")]
        recorded = {"cluster_id": ids[0], "nodes": 1} if ids else {"nodes": 1}
    nodes = recorded.get("nodes", settings.broker_nodes)
    if nodes != settings.broker_nodes:
        raise ServiceError(
            f"broker: {kafka_dir(settings)} holds a {nodes}-node cluster, the settings ask for "
            f"{settings.broker_nodes}: `braid down` and remove that folder, or use another "
            "BRAID_STACK_STATE_DIR"
        )
    if "cluster_id" not in recorded:
        recorded = {"cluster_id": _new_cluster_id(), "nodes": settings.broker_nodes}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recorded) + "\n")
    return str(recorded["cluster_id"])


def prepare(settings: StackSettings, kafka_node: KafkaNode) -> None:
    """Fetch the jars if missing, write the node's config, format its log directory once.

    The nodes of a cluster are prepared at once (threads): the jars and the cluster id are
    settled by one of them at a time, the formatting JVMs run side by side."""
    with _SHARED_STEPS:
        jars.ensure(BUNDLE)
        cluster_id = _cluster_id(settings)
    config = _write_config(settings, kafka_node)
    if is_formatted(settings, kafka_node):
        return
    argv = [
        java_binary(), f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", _classpath(),
        "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "--config", str(config),
        "--ignore-formatted",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise ServiceError(f"broker: formatting {log_dirs(settings, kafka_node)} failed:\n{tail}")
    log.info("kafka storage formatted", log_dirs=str(log_dirs(settings, kafka_node)),
             cluster_id=cluster_id, node=kafka_node.node_id)


def node_spec(settings: StackSettings, kafka_node: KafkaNode) -> ServiceSpec:
    """One node: Apache Kafka on its client port (controller on its controller port), heap
    `broker_heap`. Healthy once a metadata request to it lists the node among the live
    (registered, unfenced) brokers."""
    argv = [
        java_binary(),
        f"-Xms{settings.broker_heap}", f"-Xmx{settings.broker_heap}",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", _classpath(),
        "kafka.Kafka", str(config_path(settings, kafka_node).resolve()),
    ]
    address = f"{settings.host}:{kafka_node.port}"
    return ServiceSpec(
        name=process_name(settings, kafka_node),
        argv=argv,
        host=settings.host,
        port=kafka_node.port,
        health=partial(kafka_metadata, address, settings.host, kafka_node.port,
                       node_id=kafka_node.node_id),
        prepare=partial(prepare, settings, kafka_node),
        extra_ports=(kafka_node.controller_port,),
        service=NAME,
    )


def specs(settings: StackSettings) -> list[ServiceSpec]:
    """Every node of the cluster (one for the default single broker). The stack starts them
    all before waiting for any: a KRaft quorum of N voters elects no controller until a
    majority runs."""
    nodes = [node_spec(settings, kafka_node) for kafka_node in settings.kafka_nodes()]
    # once the last node is healthy (all of them run by then), wait for producer ids once
    nodes[-1] = replace(nodes[-1], after_start=partial(wait_for_producer_ids, settings))
    return nodes


def wait_for_producer_ids(settings: StackSettings) -> None:
    """Return once the cluster hands out producer ids (`health.idempotent_producer_ready`):
    every Braid producer is idempotent, and the first one otherwise logs librdkafka's
    "Coordinator load in progress" retries."""
    if not idempotent_producer_ready(settings.bootstrap_servers, settings.health_timeout_s):
        raise ServiceError(f"{NAME}: no producer id from {settings.bootstrap_servers} within "
                           f"{settings.health_timeout_s:.0f} s (see its log)")
