"""Checkpoints larger than one Kafka record (the indicator processor's candle histories) are
written in chunks and read back whole, on a real broker; a head whose chunks did not all land
falls back to the previous checkpoint."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Producer

from streaming.runtime.checkpoint import CHUNKS_FIELD, CheckpointStore
from streaming.runtime.deliveries import Deliveries
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import TopicSpec, ensure_topics

pytestmark = [pytest.mark.integration]


def _state(size: int, tag: str) -> dict[str, object]:
    return {"version": 2, "tag": tag, "blob": "x" * size}


def _store(kafka: KafkaSettings, topic: str, producer: Producer) -> CheckpointStore:
    return CheckpointStore(kafka, producer, topic, max_record_bytes=100_000)


def _checkpoint_topic(
    kafka: KafkaSettings, prefix: str
) -> tuple[str, Producer, CheckpointStore]:
    """A fresh compacted checkpoint topic, a producer, and a store writing to it."""
    topic = prefix + "checkpoints"
    ensure_topics(kafka, [TopicSpec(topic, 1, cleanup_policy="compact", retention_ms=-1)],
                  TopicSettings())
    producer = Producer(kafka.client_config())
    return topic, producer, _store(kafka, topic, producer)


def test_large_checkpoints_are_chunked_and_read_back_whole(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    topic, producer, store = _checkpoint_topic(kafka_settings, unique_topic_prefix)
    keys = {"g|t|0", "g|t|1"}
    for tag, size in (("big", 350_000), ("small", 10), ("bigger", 520_000), ("again", 260_000)):
        written = Deliveries()
        store.write("g|t|0", _state(size, tag), on_delivery=written.track())
        store.write("g|t|1", _state(10, tag), on_delivery=written.track())
        producer.flush(30)
        assert written.done and written.error is None  # one acknowledgement per checkpoint
        # a fresh store (a restarted processor) reads the latest state of each key
        loaded = _store(kafka_settings, topic, producer).load(keys)
        assert loaded == {"g|t|0": _state(size, tag), "g|t|1": _state(10, tag)}


def test_a_head_without_its_chunks_falls_back_to_the_previous_checkpoint(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    topic, producer, store = _checkpoint_topic(kafka_settings, unique_topic_prefix)
    store.write("g|t|0", _state(250_000, "previous"))
    producer.flush(30)
    previous = store._last_chunked["g|t|0"]
    # a head naming chunks that never landed (a crash between them, on a multi-partition topic)
    head = {CHUNKS_FIELD: {"current": {"slot": "b", "count": 3, "nonce": "0" * 32},
                           "previous": previous}}
    producer.produce(topic, key="g|t|0", value=orjson.dumps(head))
    producer.flush(30)
    assert _store(kafka_settings, topic, producer).load({"g|t|0"}) == {
        "g|t|0": _state(250_000, "previous")}
