"""The local Kafka cluster's configuration (N nodes, replication from the node count) and the
replication Braid asks for when it creates topics (from settings, else the cluster's)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from infra import stack
from infra.processes import ServiceError
from infra.services import broker, process_names
from infra.settings import StackSettings
from streaming import topics as topics_module
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import BROKER_DEFAULT, TopicSpec, ensure_topics


def test_three_nodes_listen_two_ports_apart_and_replicate_three_times(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path, broker_nodes=3, broker_port=30000,
                             controller_port=30001, services=["broker"])
    assert [(n.node_id, n.port, n.controller_port) for n in settings.kafka_nodes()] == [
        (1, 30000, 30001), (2, 30002, 30003), (3, 30004, 30005)]
    assert settings.bootstrap_servers == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)

    props = broker.server_properties(settings, broker.node(settings, 2))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:30001,2@127.0.0.1:30003,3@127.0.0.1:30005")
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:30002,CONTROLLER://127.0.0.1:30003"
    assert props["log.dirs"] == str((tmp_path / "data/kafka/node-2/logs").resolve())
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr",
                "share.coordinator.state.topic.min.isr"):
        assert props[key] == "2", key
    assert props["unclean.leader.election.enable"] == "false"

    specs = stack._specs(settings)
    assert [(s.name, s.service_name, s.port, s.extra_ports) for s in specs] == [
        ("broker-1", "broker", 30000, (30001,)), ("broker-2", "broker", 30002, (30003,)),
        ("broker-3", "broker", 30004, (30005,))]
    assert process_names("broker", settings) == ["broker-1", "broker-2", "broker-3"]


@pytest.mark.parametrize(("nodes", "replicas", "min_isr"), [(1, 1, 1), (2, 2, 2), (5, 3, 2)])
def test_replication_is_min_three_nodes_and_min_insync_min_two(
        tmp_path: Path, nodes: int, replicas: int, min_isr: int) -> None:
    settings = StackSettings(state_dir=tmp_path, broker_nodes=nodes)
    props = broker.server_properties(settings, broker.node(settings, nodes))
    assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == (
        str(replicas))
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == str(min_isr)
    assert len(props["controller.quorum.voters"].split(",")) == nodes


def test_one_node_keeps_the_single_broker_layout(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path)
    assert [s.name for s in stack._specs(settings.model_copy(update={"services": ["broker"]}))
            ] == ["broker"]
    assert broker.log_dirs(settings) == tmp_path / "data/kafka/logs"
    assert broker.config_path(settings) == tmp_path / "data/kafka/server.properties"
    props = broker.server_properties(settings)
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert settings.bootstrap_servers == "127.0.0.1:19092"


def test_a_folder_formatted_for_another_node_count_is_refused(tmp_path: Path) -> None:
    single = StackSettings(state_dir=tmp_path)
    legacy = broker.log_dirs(single) / "meta.properties"  # formatted before clusters existed
    legacy.parent.mkdir(parents=True)
    legacy.write_text("version=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\nnode.id=1\n")
    assert broker._cluster_id(single) == "AbCdEfGhIjKlMnOpQrStUv"
    with pytest.raises(ServiceError, match="holds a 1-node cluster"):
        broker._cluster_id(StackSettings(state_dir=tmp_path, broker_nodes=3))

    fresh = tmp_path / "other"
    three = StackSettings(state_dir=fresh, broker_nodes=3)
    first = broker._cluster_id(three)
    assert broker._cluster_id(three) == first  # every node gets the same id
    with pytest.raises(ServiceError, match="holds a 3-node cluster"):
        broker._cluster_id(StackSettings(state_dir=fresh, broker_nodes=2))


class _FakeAdmin:
    """Records the topics asked for; shows them as created at once."""

    created: ClassVar[list[Any]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def list_topics(self, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={
            t.topic: SimpleNamespace(error=None, partitions={
                p: SimpleNamespace(id=p, leader=1, error=None) for p in range(t.num_partitions)})
            for t in _FakeAdmin.created})

    def create_topics(self, new: list[Any], operation_timeout: float) -> dict[str, Future[None]]:
        _FakeAdmin.created = list(new)
        futures = {}
        for topic in new:
            done: Future[None] = Future()
            done.set_result(None)
            futures[topic.topic] = done
        return futures


@pytest.mark.parametrize(("settings", "replicas", "extra"), [
    (TopicSettings(), BROKER_DEFAULT, {}),
    (TopicSettings(replication_factor=3, min_insync_replicas=2), 3,
     {"min.insync.replicas": "2"}),
])
def test_topics_get_the_replication_of_the_settings_else_the_clusters(
        monkeypatch: pytest.MonkeyPatch, settings: TopicSettings, replicas: int,
        extra: dict[str, str]) -> None:
    monkeypatch.setattr(topics_module, "AdminClient", _FakeAdmin)
    monkeypatch.setattr(_FakeAdmin, "created", [])
    spec = TopicSpec("t", 4, cleanup_policy="compact")
    assert ensure_topics(KafkaSettings(), [spec], settings) == ["t"]
    (topic,) = _FakeAdmin.created
    assert (topic.num_partitions, topic.replication_factor) == (4, replicas)
    assert topic.config == {**spec.configs(), **extra}
