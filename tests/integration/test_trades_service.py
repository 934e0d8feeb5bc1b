"""The trades service against a real Apache Kafka broker: once each, keyed, partitioned; dead
letters."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition

from features.schemas.trade import TRADE_ARROW_SCHEMA, Trade
from streaming.partitioning import partition_for
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sources.base import TradeSource
from streaming.sources.synthetic import SyntheticTradeSource
from streaming.trades_service import TradesService

pytestmark = pytest.mark.integration

BAD_ROWS: list[dict[str, Any]] = [
    {"pair": "XBT/USD", "price": -5.0, "volume": 1.0, "side": "buy", "order_type": "limit",
     "trade_id": 10**9, "timestamp_ms": 1_700_000_000_000},
    {"pair": "ETH/USD", "price": 3000.0, "volume": math.nan, "side": "sell",
     "order_type": "market", "trade_id": 10**9, "timestamp_ms": 1_700_000_000_000},
    {"pair": "ETH|USD", "price": 3000.0, "volume": 1.0, "side": "sell", "order_type": "market",
     "trade_id": 1, "timestamp_ms": 1_700_000_000_000},
    {"pair": "SOL/USD", "price": 150.0, "volume": 1.0, "side": "hold", "order_type": "market",
     "trade_id": 10**9, "timestamp_ms": 1_700_000_000_000},
]


class WithBadRows(TradeSource):
    """Synthetic trades with a batch of invalid rows after the first synthetic batch."""

    name = "synthetic"

    def __init__(self, count: int) -> None:
        self.inner = SyntheticTradeSource(count=count, seed=11, chunk_size=2_000)

    def batches(self) -> Iterator[pa.Table]:
        for i, batch in enumerate(self.inner.batches()):
            yield batch
            if i == 0:
                yield pa.Table.from_pylist(BAD_ROWS, schema=TRADE_ARROW_SCHEMA)


def consume_all(kafka: KafkaSettings, topic: str, partitions: int, expected: int,
                timeout_s: float = 30.0) -> list[Any]:
    consumer = Consumer({**kafka.client_config(), "group.id": f"{topic}-check",
                         "auto.offset.reset": "earliest", "enable.auto.commit": "false",
                         "session.timeout.ms": 6000})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                assert msg.error() is None, msg.error()
                messages.append(msg)
            if len(messages) >= expected:
                # Drain briefly: a duplicate would show up as more than expected.
                messages += consumer.consume(num_messages=10_000, timeout=1.0)
                break
    finally:
        consumer.close()
    return messages


def test_valid_trades_arrive_once_keyed_and_partitioned_and_invalid_ones_are_dead_letters(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    count = 6_000
    topics = TopicSettings(market_partitions=8)
    service = TradesService(
        WithBadRows(count), kafka_settings, topic_settings=topics, progress=False,
        trades_topic=f"{unique_topic_prefix}trades",
        dead_letter_topic=f"{unique_topic_prefix}dead_letter",
    )
    summary = service.run()
    assert (summary.read, summary.sent, summary.rejected, summary.failed) == (
        count + len(BAD_ROWS), count, len(BAD_ROWS), 0)

    expected = {(r["pair"], r["trade_id"]): Trade(**r).to_wire()
                for r in pa.concat_tables(
                    SyntheticTradeSource(count=count, seed=11, chunk_size=2_000).batches()
                ).to_pylist()}
    messages = consume_all(kafka_settings, service.trades_topic, 8, count)
    seen: Counter[tuple[str, int]] = Counter()
    for msg in messages:
        wire = orjson.loads(msg.value())
        pair = wire["pair"]
        assert msg.key() == pair.encode()
        assert msg.partition() == partition_for(pair, 8)
        assert wire == expected[(pair, wire["trade_id"])]
        seen[(pair, wire["trade_id"])] += 1
    assert set(seen) == set(expected) and max(seen.values()) == 1

    dead = [orjson.loads(m.value())
            for m in consume_all(kafka_settings, service.dead_letter_topic, 1, len(BAD_ROWS))]
    assert [d["source"] for d in dead] == ["synthetic"] * len(BAD_ROWS)
    assert [d["reason"] for d in dead] == [
        "price must be positive",
        "volume is not a finite number",
        "pair must not contain '|', the key separator",
        "side must be one of buy, sell, unknown",
    ]
    assert dead[1]["row"]["volume"] == "nan" and dead[2]["row"]["pair"] == "ETH|USD"


def test_hostile_kraken_frames_become_dead_letters_and_the_service_keeps_publishing(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    """The trades service's input, live: a Kraken WebSocket (a local server) sends a frame that
    is not JSON, a trade with a missing field and one with a negative price among good ones;
    the first two are dead-lettered as unreadable input with the raw text, the third by the
    trade rules, and every good trade is published once."""
    from streaming.sources.kraken_ws import KrakenWebSocketSource
    from tests.support.kraken_servers import (
        KrakenWsServer,
        v2_subscribe_ack,
        v2_trade,
        v2_trade_frame,
    )

    t0_us = 1_695_628_177_708_706
    good = [v2_trade("BTC/USD", i, t0_us + i, 26_000.0, 0.5) for i in range(1, 5)]
    missing = {k: v for k, v in good[0].items() if k != "price"}
    negative = {**v2_trade("BTC/USD", 9, t0_us + 9, 26_000.0, 0.5), "price": -1.0}
    script = [v2_subscribe_ack("BTC/USD"), v2_trade_frame("update", good[:2]), "}{ not json",
              v2_trade_frame("update", [missing, good[2], good[3], negative])]
    with KrakenWsServer([script]) as server:
        source = KrakenWebSocketSource(url=server.url, pairs=["BTC/USD"], max_trades=5)
        service = TradesService(
            source, kafka_settings, topic_settings=TopicSettings(market_partitions=2),
            progress=False, trades_topic=f"{unique_topic_prefix}trades",
            dead_letter_topic=f"{unique_topic_prefix}dead_letter")
        summary = service.run()
    assert (summary.read, summary.sent, summary.rejected, summary.failed) == (5, 4, 3, 0)
    published = consume_all(kafka_settings, service.trades_topic, 2, 4)
    assert sorted(orjson.loads(m.value())["trade_id"] for m in published) == [1, 2, 3, 4]
    dead = [orjson.loads(m.value())
            for m in consume_all(kafka_settings, service.dead_letter_topic, 1, 3)]
    by_reason = {d["reason"].split(" (")[0]: d for d in dead}
    assert set(by_reason) == {"frame: not JSON", "frame: unreadable trade",
                              "price must be positive"}
    assert by_reason["frame: not JSON"]["raw"] == "}{ not json"
    assert orjson.loads(by_reason["frame: unreadable trade"]["raw"]) == missing
    assert by_reason["price must be positive"]["row"]["trade_id"] == 9
    assert {d["source"] for d in dead} == {"kraken-ws"}


def test_sigterm_stops_the_publish_command_after_flushing_every_read_trade(
    kafka_settings: KafkaSettings, unique_topic_prefix: str
) -> None:
    braid = Path(sys.executable).parent / "braid"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    process = subprocess.Popen(
        [str(braid), "trades", "publish", "--source", "synthetic", "--no-progress",
         "--topic-prefix", unique_topic_prefix],  # endless: only SIGTERM ends it
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # SIGTERM once trades flow (the handler is installed before the first is produced); a
        # fixed sleep raced the interpreter's start on a loaded machine
        _wait_for_first_message(kafka_settings, f"{unique_topic_prefix}trades", timeout_s=90)
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    match = re.search(r"sent ([\d,]+) trades, rejected 0, failed 0", output)
    assert match, output
    sent = int(match.group(1).replace(",", ""))
    assert sent > 0
    partitions = TopicSettings().market_partitions
    messages = consume_all(kafka_settings, f"{unique_topic_prefix}trades", partitions, sent)
    assert len(messages) == sent


def _wait_for_first_message(kafka: KafkaSettings, topic: str, timeout_s: float) -> None:
    """Wait until `topic` exists and holds a message."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"{topic}-probe",
                         "enable.auto.commit": False})
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
                break
            time.sleep(0.5)
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return
    finally:
        consumer.close()
    raise TimeoutError(f"no message on {topic} after {timeout_s:.0f} s")
