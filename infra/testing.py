"""Helpers for tests that run the stack's services (used by tests/conftest.py's fixtures).

No pytest here, so any test or script can import them.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from infra import processes, stack
from infra.services import broker
from infra.settings import NODE_PORT_STEP, StackSettings
from streaming.settings import KafkaSettings


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int, attempts: int = 50) -> int:
    """A port p such that p, p + 1 ... p + count - 1 all have nothing listening right now."""
    for _ in range(attempts):
        first = free_port()
        if first + count <= 65_535 and not any(
                processes.tcp_port_taken("127.0.0.1", port)
                for port in range(first + 1, first + count)):
            return first
    raise RuntimeError(f"no block of {count} free ports found in {attempts} attempts")


def broker_settings(state_dir: object, **overrides: object) -> StackSettings:
    """Settings of a stack running only an Apache Kafka broker, on free ports under `state_dir`."""
    broker_port = controller_port = free_port()
    while controller_port == broker_port:  # the kernel may hand the same free port out twice
        controller_port = free_port()
    return StackSettings.model_validate({
        "state_dir": state_dir,
        "broker_port": broker_port,
        "controller_port": controller_port,
        "services": ["broker"],
        **overrides,
    })


@dataclass
class BrokerStack:
    """An Apache Kafka broker of its own that tests may stop, kill and restart."""

    settings: StackSettings
    kafka_settings: KafkaSettings

    def restart_broker(self, *, hard: bool = False) -> None:
        """Stop the broker by PID (`hard`: kill -9) and start it again on the same log dir."""
        stack.restart_service(self.settings, "broker", hard=hard)


def cluster_settings(state_dir: object, nodes: int = 3, **overrides: object) -> StackSettings:
    """Settings of a stack running only a Kafka cluster of `nodes` nodes, on free ports under
    `state_dir`, each node with a 384 MiB heap (about 400 MiB resident)."""
    first = free_port_block(NODE_PORT_STEP * nodes)
    return StackSettings.model_validate({
        "state_dir": state_dir,
        "broker_nodes": nodes,
        "broker_port": first,
        "controller_port": first + 1,
        "broker_heap": "384m",
        "services": ["broker"],
        **overrides,
    })


#: Leader changes the KRaft controllers log (`org.apache.kafka.controller.QuorumController` at
#: INFO, `infra/kafka/log4j2.properties`): (node, epoch, leader) for each.
_LEADER_LINES = (
    re.compile(r"\[QuorumController id=(?P<node>\d+)\] Becoming the active controller at "
               r"epoch (?P<epoch>\d+)"),
    re.compile(r"\[QuorumController id=(?P<node>\d+)\] .*in the new epoch (?P<epoch>\d+), "
               r"the leader is (?P<leader>\d+|\(none\))", re.IGNORECASE),
    re.compile(r"\[QuorumController id=(?P<node>\d+)\] We were the leader in epoch \d+, and "
               r"are still the leader in the new epoch (?P<epoch>\d+)"),
)


@dataclass
class KafkaCluster:
    """A Kafka cluster of the stack's nodes that tests may kill -9 and restart, node by node.

    Only the nodes this stack started are ever signalled (by their recorded PIDs)."""

    settings: StackSettings
    kafka_settings: KafkaSettings

    @property
    def node_ids(self) -> list[int]:
        return [node.node_id for node in self.settings.kafka_nodes()]

    def process_name(self, node_id: int) -> str:
        return broker.process_name(self.settings, broker.node(self.settings, node_id))

    def pid(self, node_id: int) -> int | None:
        proc = processes.running_process(self.settings.run_dir, self.process_name(node_id))
        return proc.pid if proc is not None else None

    def kill(self, node_id: int) -> None:
        """kill -9 of one node (its process group, by recorded PID)."""
        if not stack.stop_service(self.settings, self.process_name(node_id), hard=True):
            raise RuntimeError(f"node {node_id} was not running")

    def start(self, node_id: int) -> None:
        """Start a stopped node on its log directory; returns once it serves metadata again."""
        stack.start_service(self.settings, self.process_name(node_id))

    def active_controller(self, timeout_s: float = 60.0) -> int:
        """The node that is the active KRaft controller now: the leader of the highest epoch any
        running node logged, once that leader is running."""
        deadline = time.monotonic() + timeout_s
        while True:
            leader = self._latest_leader()
            if leader is not None and self.pid(leader) is not None:
                return leader
            if time.monotonic() > deadline:
                raise TimeoutError(f"no running active controller after {timeout_s:.0f} s")
            time.sleep(0.2)

    def _latest_leader(self) -> int | None:
        best: tuple[int, int | None] = (-1, None)
        for node_id in self.node_ids:
            log_file = processes.log_path(self.settings.log_dir, self.process_name(node_id))
            try:
                text = log_file.read_text(errors="replace")
            except FileNotFoundError:
                continue
            for pattern in _LEADER_LINES:
                for match in pattern.finditer(text):
                    epoch = int(match["epoch"])
                    named = match.groupdict().get("leader", match["node"])
                    leader = int(named) if named and named.isdigit() else None
                    if epoch > best[0] or (epoch == best[0] and best[1] is None):
                        best = (epoch, leader)
        return best[1]

    def wait_in_sync(self, timeout_s: float = 120.0) -> float:
        """Wait until every partition of every topic (internal ones included) has all its
        replicas in sync and a leader; returns the seconds waited."""
        began = time.monotonic()
        admin = AdminClient({**self.kafka_settings.client_config(), "log_level": 0})
        lagging: list[str] = []
        while time.monotonic() - began < timeout_s:
            try:
                topics = admin.list_topics(timeout=5).topics
            except Exception:  # the node asked may be restarting: ask again
                time.sleep(0.5)
                continue
            lagging = [
                f"{name}[{number}]" for name, topic in topics.items()
                for number, partition in topic.partitions.items()
                if partition.leader < 0 or set(partition.isrs) != set(partition.replicas)
            ]
            if not lagging:
                return time.monotonic() - began
            time.sleep(0.25)
        raise TimeoutError(f"replicas still out of sync after {timeout_s:.0f} s: {lagging[:5]}")


@dataclass(frozen=True)
class GcsEmulator:
    """The running GCS emulator: its endpoint URL and a bucket that exists."""

    endpoint: str
    bucket: str
    project: str


def unique_topic(prefix: str, name: str) -> str:
    """`name` under a test's prefix (see the `unique_topic_prefix` fixture)."""
    return f"{prefix}{name}"
