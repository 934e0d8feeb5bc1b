"""What Braid relies on from a real Kafka broker (Apache Kafka, started by the stack)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streaming.settings import KafkaSettings
from streaming.topics import CANDLES, CHECKPOINTS, INDICATORS, TopicSpec, catalogue, ensure_topics

pytestmark = pytest.mark.integration

#: Make the broker compact within seconds: short segments, any dirty ratio. The catalogue's own
#: configs (cleanup policy, retention) come on top, unchanged.
FAST_COMPACTION = {"segment.ms": "200", "min.cleanable.dirty.ratio": "0.01"}


def _read_all(
    conf: dict[str, str | int | float | bool], topic: str, partitions: int
) -> list[tuple[str, str, int]]:
    """(key, value, offset) of every record from the start, in offset order per partition."""
    consumer = Consumer({**conf, "group.id": f"{topic}-check", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[str, str, int]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 30
    try:
        while len(at_end) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    at_end.add(msg.partition() or 0)
                    continue
                out.append(((msg.key() or b"").decode(), (msg.value() or b"").decode(),
                            msg.offset() or 0))
    finally:
        consumer.close()
    assert len(at_end) == partitions, "did not reach the end of every partition"
    return out


@pytest.mark.parametrize("name", [CANDLES, INDICATORS, CHECKPOINTS])
def test_keyed_topics_are_compacted_and_keep_every_keys_latest_value(
    kafka_settings: KafkaSettings, unique_topic_prefix: str, name: str
) -> None:
    spec = next(s for s in catalogue() if s.name == name)
    assert spec.configs()["cleanup.policy"] == "compact"
    conf = dict(kafka_settings.client_config())
    topic = f"{unique_topic_prefix}{name}"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(
        topic, num_partitions=2, replication_factor=1,
        config={**spec.configs(), **FAST_COMPACTION},
    )])[topic].result()

    producer = Producer({**conf, "linger.ms": 0})
    keys = [f"XBT/USD|60000|{i * 60_000}" for i in range(40)]
    latest: dict[str, str] = {}
    rounds = 5
    for version in range(rounds):
        for key in keys:
            value = f"{key}@v{version}"
            producer.produce(topic, key=key, value=value)
            latest[key] = value
        assert producer.flush(10) == 0
        time.sleep(0.3)  # the next append rolls the segment (segment.ms)
    producer.produce(topic, key="roll", value="roll")  # closes the segment holding the last round
    latest["roll"] = "roll"
    assert producer.flush(10) == 0
    produced = rounds * len(keys) + 1

    deadline = time.monotonic() + 60
    records = _read_all(conf, topic, 2)
    while len(records) == produced and time.monotonic() < deadline:
        time.sleep(1)
        records = _read_all(conf, topic, 2)
    assert len(records) < produced, "the broker never compacted the topic"

    last: dict[str, str] = {}
    for key, value, _ in records:
        last[key] = value
    assert last == latest



def test_topics_are_visible_to_a_new_client_as_soon_as_ensure_topics_returns(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    """Apache Kafka propagates a new topic to its metadata asynchronously; `ensure_topics`
    waits for it, so a client created right after (the trades service's producer) finds every
    partition. `braid demo` failed with KeyError on the trades topic before."""
    specs = [s for s in catalogue() if s.name in (CANDLES, INDICATORS)]
    prefixed = [TopicSpec(f"{unique_topic_prefix}{s.name}", s.partitions, s.cleanup_policy,
                          s.retention_ms) for s in specs]
    assert ensure_topics(kafka_settings, prefixed) == [s.name for s in prefixed]
    producer = Producer(dict(kafka_settings.client_config()))
    topics = producer.list_topics(timeout=10).topics
    for spec in prefixed:
        assert len(topics[spec.name].partitions) == spec.partitions
