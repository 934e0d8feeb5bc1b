"""`braid topics create` (compose's one-shot `topics` service, the Kubernetes `braid-topics` Job)
against a real broker: the whole catalogue with its partitions and configs, idempotent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from cli.topics import create
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import catalogue

pytestmark = pytest.mark.integration


def test_topics_create_makes_the_catalogue_once(
        kafka_settings: KafkaSettings, unique_topic_prefix: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
           "BRAID_TOPIC_MARKET_PARTITIONS": "3", "BRAID_TOPIC_SENSOR_PARTITIONS": "2"}
    specs = catalogue(TopicSettings(market_partitions=3, sensor_partitions=2))
    command = [sys.executable, "-m", "cli.main", "topics", "create",
               "--topic-prefix", unique_topic_prefix]

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"{len(specs)} topics ready, {len(specs)} created" in first.stdout

    admin = AdminClient(kafka_settings.client_config())
    topics = admin.list_topics(timeout=10).topics
    for spec in specs:
        name = unique_topic_prefix + spec.name
        assert len(topics[name].partitions) == spec.partitions, name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, unique_topic_prefix + s.name)
                 for s in specs]
    by_name = {unique_topic_prefix + s.name: s for s in specs}
    for resource, future in admin.describe_configs(resources).items():
        configs, spec = future.result(), by_name[resource.name]
        assert configs["cleanup.policy"].value == spec.cleanup_policy, spec.name
        assert configs["retention.ms"].value == str(spec.retention_ms), spec.name

    # again, in this process (the entry point is proven above): nothing new, nothing refused
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "BRAID_TOPIC_MARKET_PARTITIONS",
                 "BRAID_TOPIC_SENSOR_PARTITIONS"):
        monkeypatch.setenv(name, env[name])
    create(topic_prefix=unique_topic_prefix)
    assert f"{len(specs)} topics ready, 0 created" in capsys.readouterr().out
