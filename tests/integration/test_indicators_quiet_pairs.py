"""The indicator processor on a real broker: a pair that falls silent does not hold the committed
offset back, and after a restart the processor replays only what came after its checkpoint,
its output (every message) equal to an uninterrupted run's."""

from __future__ import annotations

import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from features.indicators import MAX_WARMUP
from streaming.partitioning import partition_for
from streaming.pipelines.markets import MarketsTopics, indicator_processor
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import ensure_topics
from tests.unit.test_indicator_operator import QUIET, _candles

pytestmark = [pytest.mark.integration]

PARTITIONS = 1  # every pair on one partition: the quiet pair shares it with the busy ones


def _produce(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = Producer(kafka.client_config())
    for value in values:
        candle = orjson.loads(value)
        key = f"{candle['pair']}|{candle['window_ms']}|{candle['window_start_ms']}"
        producer.produce(topic, key=key, value=value,
                         partition=partition_for(str(candle["pair"]), PARTITIONS))
    assert producer.flush(30) == 0


def _run(kafka: KafkaSettings, topics: MarketsTopics, group: str) -> None:
    indicator_processor(kafka, topics=topics, group=group).run(max_idle_s=3,
                                                               install_signals=False)


def _committed(kafka: KafkaSettings, group: str, topic: str) -> int:
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def _messages(kafka: KafkaSettings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(key, value) for _, _, key, value in read_topic(kafka, topic, settle_s=0.5)]


def test_a_quiet_pair_does_not_pin_the_offset_and_a_restart_replays_a_bounded_tail(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    values = _candles(3)
    quiet_last = max(i for i, v in enumerate(values) if orjson.loads(v)["pair"] == QUIET)
    cut = len(values) - 40  # the restart comes here, long after the quiet pair's last candle
    assert cut - quiet_last > MAX_WARMUP

    reference = MarketsTopics.prefixed(unique_topic_prefix + "ref.")
    ensure_topics(kafka_settings, reference.specs(PARTITIONS), TopicSettings())
    _produce(kafka_settings, reference.candles, values)
    _run(kafka_settings, reference, f"{unique_topic_prefix}ref")
    expected = _messages(kafka_settings, reference.indicators)
    assert len(expected) == len(values)

    topics = MarketsTopics.prefixed(unique_topic_prefix + "run.")
    group = f"{unique_topic_prefix}run-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_settings, topics.specs(PARTITIONS), TopicSettings())
    _produce(kafka_settings, topics.candles, values[:cut])
    _run(kafka_settings, topics, group)
    # everything consumed is committed: the quiet pair's history is in the checkpoint
    assert _committed(kafka_settings, group, topics.candles) == cut
    _produce(kafka_settings, topics.candles, values[cut:])
    _run(kafka_settings, topics, group)  # restores the checkpoint, replays nothing before `cut`
    assert _committed(kafka_settings, group, topics.candles) == len(values)

    # every message, in each pair's order (pairs interleave as micro-batches fall): none
    # missing, none repeated, none changed
    got = _messages(kafka_settings, topics.indicators)
    assert _by_pair(got) == _by_pair(expected)


def _by_pair(messages: list[tuple[bytes | None, bytes | None]]
             ) -> dict[str, list[tuple[bytes | None, bytes | None]]]:
    out: dict[str, list[tuple[bytes | None, bytes | None]]] = {}
    for key, value in messages:
        assert key is not None
        out.setdefault(key.decode().split("|")[0], []).append((key, value))
    return out
