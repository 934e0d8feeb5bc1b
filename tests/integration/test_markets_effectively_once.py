"""kill -9 (and SIGTERM) of the candle and indicator processors at arbitrary moments of a live
stream, then restart: the output topics hold exactly the candles and indicators of an
uninterrupted run (a duplicate with the identical value is allowed, a different value is
not)."""

from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from features.indicators import INDICATOR_COLUMNS
from features.schemas.window_closure import is_closure
from infra.testing import BrokerStack
from streaming.pipelines.markets import (
    MarketsTopics,
    close_input,
    produce_trades,
    run_trades_through_stream,
)
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sources.synthetic import SyntheticTradeSource
from streaming.topics import ensure_topics
from tests.support.history_checker import compare_history
from tests.support.processes import BraidProcess
from tests.support.reliability_report import record_faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
GRACE_MS = 2_000


def _trades() -> pa.Table:
    source = SyntheticTradeSource(count=40_000, seed=11, pairs=["XBT/USD", "ETH/USD", "SOL/USD",
                                                               "ADA/USD"],
                                  out_of_order_fraction=0.05, max_disorder_ms=1_500,
                                  late_fraction=0.002, late_min_ms=5_000, late_max_ms=30_000)
    return pa.concat_tables(list(source.batches()))


def _values_by_key(kafka: KafkaSettings, topic: str) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for _, _, key, value in read_topic(kafka, topic):
        assert key is not None and value is not None
        out.setdefault(key.decode(), []).append(orjson.loads(value))
    return out


def _produce_slowly(kafka: KafkaSettings, topic: str, trades: pa.Table, seconds: float) -> None:
    """The trades in 40 chunks over `seconds`, then the end of the input (closure records:
    the synthetic trades are history, whose windows close by event time alone)."""
    chunks = 40
    size = -(-trades.num_rows // chunks)
    for i in range(chunks):
        produce_trades(kafka, topic, trades.slice(i * size, size), PARTITIONS)
        time.sleep(seconds / chunks)
    close_input(kafka, topic, trades, PARTITIONS)


def test_kill_9_and_restart_gives_exactly_the_uninterrupted_output(
    kafka_settings: KafkaSettings, unique_topic_prefix: str, tmp_path: Path
) -> None:
    trades = _trades()
    reference_candles, reference_indicators = run_trades_through_stream(
        trades, kafka_settings, durations=[60_000, 300_000], grace_ms=GRACE_MS,
        topic_prefix=unique_topic_prefix + "ref.", partitions=PARTITIONS, idle_timeout_ms=3_000)
    assert reference_candles.num_rows > 100 and reference_indicators.num_rows > 100

    prefix = unique_topic_prefix + "run."
    topics = MarketsTopics.prefixed(prefix)
    ensure_topics(kafka_settings, topics.specs(PARTITIONS), TopicSettings())
    common = ["--topic-prefix", prefix]
    env = {"BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS)}
    candles = BraidProcess(["markets", "candles", "-d", "60s", "-d", "5m", "--grace", "2s",
                            "--idle-timeout", "3s", "--batch-size", "500", *common],
                           kafka_settings, tmp_path / "candles.log", env).start()
    indicators = BraidProcess(["markets", "indicators", *common], kafka_settings,
                              tmp_path / "indicators.log", env).start()
    producer = threading.Thread(target=_produce_slowly,
                                args=(kafka_settings, topics.trades, trades, 25.0))
    producer.start()
    rng = random.Random(5)
    try:
        # stop each incarnation at a random moment after it got its partitions, mid-stream:
        # kill -9, or SIGTERM (a clean stop: exit status 0)
        for victim, hard in ((candles, True), (indicators, True), (candles, False),
                             (candles, True), (indicators, False)):
            victim.wait_for_log('"event": "assigned"', victim.starts)
            time.sleep(rng.uniform(0.3, 2.5))
            if hard:
                victim.kill9()
            else:
                assert victim.terminate() == 0
            victim.start()
        producer.join()
        _wait_for_keys(kafka_settings, topics.indicators,
                       {_key(r) for r in reference_indicators.to_pylist()})
    finally:
        for process in (candles, indicators):
            if process.alive():
                process.terminate()
    assert candles.starts == 4 and indicators.starts == 3
    # the restarts really resumed from checkpoints (not from scratch)
    assert candles.log_path.read_text().count('"restored": 4') >= 2
    assert indicators.log_path.read_text().count('"restored": 4') >= 1

    # every emitted message against the uninterrupted run (a duplicate with the identical
    # value is allowed, a different value is not)
    candles_check = compare_history(_values_by_key(kafka_settings, topics.candles),
                                    {_key(r): r for r in reference_candles.to_pylist()})
    indicators_check = compare_history(_values_by_key(kafka_settings, topics.indicators),
                                       {_key(r): r for r in reference_indicators.to_pylist()},
                                       _same_indicators)
    record_faults("markets processors killed", {"kill -9": 3, "SIGTERM": 2},
                  candles_check + indicators_check)
    assert candles_check.clean, candles_check
    assert indicators_check.clean, indicators_check
    assert candles_check.checked >= reference_candles.num_rows


def _same_indicators(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Every indicator column equal (null on the wire is NaN in the reference), close too."""
    for column in INDICATOR_COLUMNS:
        value, expected = got[column], want[column]
        if not ((value is None and math.isnan(expected)) or value == expected):
            return False
    return bool(got["close"] == want["close"])


def _wait_for_keys(kafka: KafkaSettings, topic: str, want: set[str]) -> None:
    """Wait until `topic` holds a record for every key in `want` (the uninterrupted run's
    windows), then a few seconds more so that a late duplicate would be seen too.

    Waiting for silence instead would end early on a slow machine: a processor restarted
    after the last trade first waits out its predecessor's session before it emits."""
    deadline = time.monotonic() + 240
    missing = want
    while time.monotonic() < deadline:
        got = {key.decode() for _, _, key, _ in read_topic(kafka, topic, settle_s=0.3)
               if key is not None}
        missing = want - got
        if not missing:
            time.sleep(3)
            return
        time.sleep(1)
    raise TimeoutError(f"{topic} still lacks {len(missing)} windows, e.g. {sorted(missing)[:3]}")


def test_broker_restart_mid_stream_loses_nothing_and_processors_carry_on(
    broker_stack: BrokerStack, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """The broker is killed (kill -9) and started again while trades flow; the producer
    and both processors reconnect by themselves and the outputs equal an uninterrupted run.

    The trades are history (event times in 2023), so no window closes on idle whatever the
    outage; the idle timeout is longer than the outage all the same, as a live deployment's
    should be: a producer that cannot reach the broker looks exactly like a quiet market."""
    kafka = broker_stack.kafka_settings
    trades = _trades().slice(0, 20_000)
    reference_candles, reference_indicators = run_trades_through_stream(
        trades, kafka, durations=[60_000], grace_ms=GRACE_MS,
        topic_prefix=unique_topic_prefix + "ref.", partitions=PARTITIONS, idle_timeout_ms=3_000)

    prefix = unique_topic_prefix + "run."
    topics = MarketsTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    env = {"BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS)}
    common = ["--topic-prefix", prefix]
    candles = BraidProcess(["markets", "candles", "-d", "60s", "--grace", "2s",
                            "--idle-timeout", "25s", "--batch-size", "500", *common],
                           kafka, tmp_path / "candles.log", env).start()
    indicators = BraidProcess(["markets", "indicators", *common], kafka,
                              tmp_path / "indicators.log", env).start()
    producer = threading.Thread(target=_produce_slowly, args=(kafka, topics.trades, trades, 20.0))
    producer.start()
    try:
        candles.wait_for_log('"event": "assigned"', 1)
        indicators.wait_for_log('"event": "assigned"', 1)
        time.sleep(3)
        broker_stack.restart_broker(hard=True)
        producer.join()
        _wait_for_keys(kafka, topics.indicators,
                       {_key(r) for r in reference_indicators.to_pylist()})
        assert candles.alive() and indicators.alive(), "a processor died with the broker"
    finally:
        for process in (candles, indicators):
            if process.alive():
                process.terminate()

    stored = [v for *_, v in read_topic(kafka, topics.trades) if not is_closure(v)]
    assert len({json_key(v) for v in stored}) == trades.num_rows  # every trade, once
    candles_check = compare_history(_values_by_key(kafka, topics.candles),
                                    {_key(r): r for r in reference_candles.to_pylist()})
    indicators_check = compare_history(_values_by_key(kafka, topics.indicators),
                                       {_key(r): r for r in reference_indicators.to_pylist()},
                                       _same_indicators)
    record_faults("broker killed and restarted", {"broker kill -9": 1},
                  candles_check + indicators_check)
    assert candles_check.clean, candles_check
    assert indicators_check.clean, indicators_check


def _key(row: dict[str, object]) -> str:
    return f"{row['pair']}|{row['window_ms']}|{row['window_start_ms']}"


def json_key(value: bytes | None) -> tuple[object, object]:
    assert value is not None
    trade = orjson.loads(value)
    return trade["pair"], trade["trade_id"]
