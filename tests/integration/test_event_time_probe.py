"""The probe of issue 10, on a real broker: a plain confluent-kafka producer writes one trade
stamped `timestamp_ms = 10**18` into the trades topic of a running candle processor, then normal
trades. The bad trade is dead-lettered with the event-time skew reason (its Kafka timestamp is
now) and the pair keeps producing candles."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from confluent_kafka import Producer

from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS, skew_reason
from features.windows import TumblingWindow
from streaming.partitioning import partition_for
from streaming.pipelines.markets import MarketsTopics, candle_processor
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import ensure_topics

pytestmark = [pytest.mark.integration]

PARTITIONS = 2
MINUTE = 60_000
PAIR = "XBT/USD"


def _trade(ts: int, trade_id: int) -> bytes:
    return orjson.dumps({"v": 1, "pair": PAIR, "price": 100.0 + trade_id, "volume": 1.0,
                         "side": "buy", "order_type": "market", "trade_id": trade_id,
                         "timestamp_ms": ts})


def _candle_starts(kafka: KafkaSettings, topic: str) -> set[int]:
    return {int(orjson.loads(value)["window_start_ms"])
            for _, _, _, value in read_topic(kafka, topic, settle_s=0.3) if value is not None}


def test_a_trade_stamped_10_to_the_18_is_dead_lettered_and_the_pair_keeps_its_candles(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    topics = MarketsTopics.prefixed(unique_topic_prefix)
    ensure_topics(kafka_settings, topics.specs(PARTITIONS), TopicSettings())
    processor = candle_processor(kafka_settings, (TumblingWindow(MINUTE, 2_000),),
                                 topics=topics, idle_timeout_ms=60_000,
                                 group=f"{unique_topic_prefix}candles")
    runner = threading.Thread(target=processor.run, kwargs={"install_signals": False})
    runner.start()
    try:
        # event times in the recent past (their Kafka CreateTime, stamped by the producer, is
        # now): ten minutes of XBT/USD, the probe after the fourth
        now = int(time.time() * 1000)
        base = now - now % MINUTE - 10 * MINUTE
        producer = Producer(kafka_settings.client_config())
        partition = partition_for(PAIR, PARTITIONS)

        def send(value: bytes) -> None:
            producer.produce(topics.trades, key=PAIR, value=value, partition=partition)

        for minute in range(4):
            send(_trade(base + minute * MINUTE + 1_000, minute))
        producer.flush(10)
        time.sleep(1)  # the probe arrives on its own, after the processor caught up
        send(_trade(10**18, 100))
        producer.flush(10)
        time.sleep(1)
        for minute in range(4, 10):
            send(_trade(base + minute * MINUTE + 1_000, minute))
        producer.flush(10)

        # stream time (minute 9 + 1 s) less the 2 s grace closes every window ending by then:
        # those of minutes 0-7, four of them after the probe
        expected = {base + minute * MINUTE for minute in range(8)}
        deadline = time.monotonic() + 60
        got: set[int] = set()
        while time.monotonic() < deadline and not expected <= got:
            got = _candle_starts(kafka_settings, topics.candles)
            time.sleep(0.5)
        assert expected <= got, sorted(expected - got)
    finally:
        processor.stop()
        runner.join(30)

    letters = [orjson.loads(value) for _, _, _, value in
               read_topic(kafka_settings, topics.dead_letter, settle_s=0.3) if value is not None]
    assert [(d["reason"], orjson.loads(d["value"])["timestamp_ms"]) for d in letters] == [
        ("invalid: " + skew_reason(DEFAULT_MAX_EVENT_TIME_SKEW_MS), 10**18)]
    assert letters[0]["topic"] == topics.trades and letters[0]["partition"] == partition
