"""librdkafka client settings: Braid's defaults, and the operator's `KAFKA_EXTRA` winning over
them (no broker needed)."""

from __future__ import annotations

import pytest

from streaming.runtime.clients import consumer_config, producer_config
from streaming.settings import KafkaSettings


def test_producer_defaults_are_idempotent_acks_all_and_lingering() -> None:
    conf = producer_config(KafkaSettings(bootstrap_servers="b:9092"))
    assert conf["bootstrap.servers"] == "b:9092"
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["linger.ms"] == 5
    assert conf["socket.nagle.disable"] is True
    assert "max.in.flight.requests.per.connection" not in conf


def test_without_idempotence_one_request_is_in_flight() -> None:
    conf = producer_config(KafkaSettings(enable_idempotence=False))
    assert conf["enable.idempotence"] is False
    assert conf["max.in.flight.requests.per.connection"] == 1


def test_kafka_extra_from_the_environment_overrides_braids_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_EXTRA", '{"linger.ms": "1", "client.rack": "a"}')
    kafka = KafkaSettings()
    conf = producer_config(kafka)
    assert conf["linger.ms"] == "1"
    assert conf["client.rack"] == "a"
    # an explicit override in code still wins over both
    assert producer_config(kafka, **{"linger.ms": 0})["linger.ms"] == 0


def test_consumer_defaults_and_kafka_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = consumer_config(KafkaSettings(), "g")
    assert conf["group.id"] == "g"
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False
    assert conf["fetch.wait.max.ms"] == 500
    monkeypatch.setenv("KAFKA_EXTRA", '{"fetch.wait.max.ms": "10"}')
    assert consumer_config(KafkaSettings(), "g")["fetch.wait.max.ms"] == "10"
