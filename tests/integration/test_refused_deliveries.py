"""A record the broker refuses is never lost in silence: librdkafka reports a refusal (a record
over the topic's `max.message.bytes`, a topic the broker does not know yet right after its
creation) only in the delivery report, never in `flush`. Braid's producers of readings and
trades raise, and the demo's publisher sends a refused reading again, then raises, naming the
refusal. The broker here refuses for good: the sensor topics accept records of at most 512
bytes, and the readings of a client with a 4,000-character random name exceed them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cli.demo_sensors import RESENDS, publish_as_they_arrive
from streaming.pipelines.markets import produce_trades
from streaming.pipelines.sensors import SensorTopics, produce_events, read_readings
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration

SMALL = {"max.message.bytes": "512"}


def small_topics(kafka: KafkaSettings, prefix: str) -> SensorTopics:
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, [TopicSpec(s.name, s.partitions, s.cleanup_policy, s.retention_ms,
                                    extra=SMALL) for s in topics.specs(4)], TopicSettings())
    return topics


def readings(clients: list[str]) -> pa.Table:
    """One SX, SY and SZ reading per client, a second apart."""
    rows = [(sensor, client, 1_767_225_600_000 + 1_000 * i, float(i % 3))
            for i, (client, sensor) in enumerate((c, s) for c in clients
                                                 for s in ("SX", "SY", "SZ"))]
    return pa.table({"sensor": [r[0] for r in rows], "client": [r[1] for r in rows],
                     "timestamp_ms": pa.array([r[2] for r in rows], pa.int64()),
                     "value": [r[3] for r in rows], "incident": [False] * len(rows)})


def long_name() -> str:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
    return np.random.default_rng(7).choice(letters, 4_000).tobytes().decode()


def test_readings_within_the_limit_are_all_logged_and_one_refused_raises(
        kafka_settings: KafkaSettings, unique_topic_prefix: str) -> None:
    topics = small_topics(kafka_settings, unique_topic_prefix)
    fine = readings(["a", "b"])
    assert produce_events(kafka_settings, topics, fine, 4) == 6
    logged = read_readings(kafka_settings, topics)
    assert sorted(zip(logged["client"].to_pylist(), logged["sensor"].to_pylist(),
                      logged["timestamp_ms"].to_pylist(), strict=True)) == sorted(
        zip(fine["client"].to_pylist(), fine["sensor"].to_pylist(),
            fine["timestamp_ms"].to_pylist(), strict=True))

    with pytest.raises(RuntimeError, match=r"not all delivered: .*too large"):
        produce_events(kafka_settings, topics, readings(["c", long_name()]), 4)


def test_the_demo_publisher_sends_a_refused_reading_again_then_names_the_refusal(
        kafka_settings: KafkaSettings, unique_topic_prefix: str) -> None:
    topics = small_topics(kafka_settings, unique_topic_prefix)
    events = readings(["d", long_name(), "e"])
    arrival = events["timestamp_ms"].to_numpy()
    with pytest.raises(RuntimeError, match=f"3 sensor readings were refused {RESENDS + 1} "
                                           "times, the last time: .*too large"):
        publish_as_they_arrive(kafka_settings, topics, events, arrival)
    # the other clients' readings went through, once each
    logged = read_readings(kafka_settings, topics)
    assert sorted(logged["client"].to_pylist()) == ["d"] * 3 + ["e"] * 3


def test_a_refused_trade_raises(kafka_settings: KafkaSettings, unique_topic_prefix: str
                                ) -> None:
    topic = unique_topic_prefix + "trades"
    ensure_topics(kafka_settings, [TopicSpec(topic, 2, extra=SMALL)], TopicSettings())
    trade = {"pair": "XBT/USD", "price": 1.0, "volume": 1.0, "side": "buy",
             "order_type": "limit", "trade_id": 1, "timestamp_ms": 1_767_225_600_000}
    produce_trades(kafka_settings, topic, pa.Table.from_pylist([trade]), 2)
    with pytest.raises(RuntimeError, match=r"trades were not all delivered: .*too large"):
        produce_trades(kafka_settings, topic,
                       pa.Table.from_pylist([{**trade, "pair": long_name()}]), 2)
