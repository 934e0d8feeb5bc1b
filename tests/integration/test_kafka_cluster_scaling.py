"""Scale out and back, exactly: the candle, indicator and sensor window processors run as one
process per consumer group, then three, then two, mid-stream, on a 3-node Kafka cluster. The
member leaving the candle group stops with SIGTERM (a clean hand-over: it checkpoints and
commits what it produced, then leaves); the ones leaving the indicator and window groups are
killed with -9 (the survivors take their partitions once their sessions expire, from their last
checkpoints). Every output message equals a single uninterrupted process's
(`tests/support/history_checker.py`), and every partition handed over is restored from its
checkpoint (the runtime's hand-over log)."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from features.sensors.simulator import SimulatorConfig, simulate
from infra.testing import KafkaCluster
from streaming.pipelines.markets import (
    MarketsTopics,
    close_input,
    produce_trades,
    run_trades_through_stream,
)
from streaming.pipelines.sensors import (
    SensorTopics,
    produce_events,
    run_sensors_through_stream,
)
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sources.synthetic import SyntheticTradeSource
from streaming.topics import ensure_topics
from tests.integration.test_kafka_cluster_faults import trades_rejected
from tests.integration.test_markets_effectively_once import (
    _key,
    _same_indicators,
    _values_by_key,
    _wait_for_keys,
)
from tests.integration.test_sensors_effectively_once import _features
from tests.support.history_checker import compare_final, compare_history
from tests.support.paced_producer import PacedProducer
from tests.support.processes import BraidProcess
from tests.support.reliability_report import record_faults

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

PARTITIONS = 6
PAIRS = ["XBT/USD", "ETH/USD", "SOL/USD", "ADA/USD", "DOT/USD", "XRP/USD"]
CHUNKS = 200  # 1 s apart: the stream flows for over 3 minutes of scaling
#: The candle processor's idle timeout (the synthetic trades are history: never closed on idle,
#: whatever the gaps between chunks on a loaded machine)
IDLE = "20s"


@dataclass
class Group:
    """The processes of one consumer group, each started from the same command line."""

    name: str
    leaves_with_kill9: bool  # how its third member leaves: kill -9, else SIGTERM
    args: list[str]
    kafka: KafkaSettings
    logs: Path
    env: dict[str, str]
    members: list[BraidProcess] = field(default_factory=list)

    def add(self) -> BraidProcess:
        member = BraidProcess(self.args, self.kafka,
                              self.logs / f"{self.name}-{len(self.members) + 1}.log",
                              self.env).start()
        self.members.append(member)
        return member

    def alive(self) -> list[BraidProcess]:
        return [m for m in self.members if m.alive()]

    def settled(self) -> bool:
        """Every running member's latest hand-over event is an assignment, and together they
        own every partition once."""
        owned: list[int] = []
        for member in self.alive():
            events = [e for e in _events(member) if e["event"] in ("assigned", "revoked")]
            if not events or events[-1]["event"] != "assigned":
                return False
            owned += _owned(events)
        return sorted(owned) == list(range(PARTITIONS))


def _events(member: BraidProcess) -> list[dict[str, Any]]:
    events = []
    for line in member.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return events


def _owned(events: list[dict[str, Any]]) -> list[int]:
    """The partitions of the last assignment (eager rebalances: each replaces the previous)."""
    return list(events[-1]["partitions"])


def _wait_settled(groups: Iterable[Group], members: int, timeout_s: float = 300) -> float:
    """Wait until each group runs `members` processes that own every partition; returns the
    seconds waited (most of it, processes starting: 9 on 2 cores)."""
    began = time.monotonic()
    groups = list(groups)
    while not all(len(g.alive()) == members and g.settled() for g in groups):
        if time.monotonic() - began > timeout_s:
            state = {g.name: [(m.log_path.name, m.alive()) for m in g.members] for g in groups}
            raise TimeoutError(f"groups not settled on {members} members: {state}")
        time.sleep(0.3)
    return time.monotonic() - began


def _trades() -> pa.Table:
    source = SyntheticTradeSource(count=24_000, seed=23, pairs=PAIRS, out_of_order_fraction=0.05,
                                  max_disorder_ms=1_500, late_fraction=0.002, late_min_ms=5_000,
                                  late_max_ms=30_000)
    return pa.concat_tables(list(source.batches()))


def test_processors_scaled_one_three_two_mid_stream_equal_a_single_uninterrupted_process(
        kafka_cluster: KafkaCluster, unique_topic_prefix: str, tmp_path: Path) -> None:
    kafka = kafka_cluster.kafka_settings
    trades = _trades()
    events = simulate(SimulatorConfig(clients=12, duration_ms=30 * 60_000, disorder_ms=6_000,
                                      seed=17))
    prefix = unique_topic_prefix + "run."
    markets = MarketsTopics.prefixed(prefix)
    sensors = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, markets.specs(PARTITIONS), TopicSettings())
    ensure_topics(kafka, sensors.specs(PARTITIONS), TopicSettings())
    env = {"BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS)}
    common = ["--topic-prefix", prefix]
    groups = [
        Group("candles", False, ["markets", "candles", "-d", "60s", "-d", "5m", "--grace", "2s",
                          "--idle-timeout", IDLE, "--batch-size", "500",
                          "--group", prefix + "candles", *common], kafka, tmp_path, env),
        Group("indicators", True, ["markets", "indicators", "--group", prefix + "indicators",
                             *common], kafka, tmp_path, env),
        Group("windows", True, ["sensors", "windows", "--grace", "3s", "--batch-size", "300",
                          "--partitions", str(PARTITIONS),
                          "--group", prefix + "windows", *common], kafka, tmp_path, env),
    ]
    trade_size = -(-trades.num_rows // CHUNKS)
    event_size = -(-events.num_rows // CHUNKS)

    def chunks(start: int, stop: int) -> None:
        produce_trades(kafka, markets.trades,
                       trades.slice(start * trade_size, (stop - start) * trade_size), PARTITIONS)
        produce_events(kafka, sensors,
                       events.slice(start * event_size, (stop - start) * event_size), PARTITIONS)

    producer = PacedProducer(chunks, CHUNKS, pace_s=1.0, started_chunks=10)
    phases: dict[str, float] = {}
    try:
        for group in groups:
            group.add()
        # the uninterrupted runs, on topics of their own, while the first members start
        ref_candles, ref_indicators = run_trades_through_stream(
            trades, kafka, durations=[60_000, 300_000], grace_ms=2_000,
            topic_prefix=unique_topic_prefix + "ref.", partitions=PARTITIONS,
            idle_timeout_ms=3_000)
        ref_sensors = run_sensors_through_stream(events, kafka,
                                                 topic_prefix=unique_topic_prefix + "refs.",
                                                 grace_ms=3_000, partitions=PARTITIONS)
        # each feature's final value (a reading within grace corrects earlier ones)
        want_features = {key: values[-1]
                         for key, values in _features(kafka, ref_sensors.topics).items()}
        assert ref_candles.num_rows > 100 and len(want_features) > 500
        phases["1 member"] = _wait_settled(groups, 1)
        producer.start()
        producer.started.wait(120)
        for group in groups:  # scale out: 1 -> 3
            group.add()
            group.add()
        phases["3 members"] = _wait_settled(groups, 3)
        time.sleep(10)  # three members at work, each on its share of the stream
        for group in groups:  # scale back: 3 -> 2
            leaving = group.members[2]
            if group.leaves_with_kill9:
                leaving.kill9()  # the survivors take its partitions once its session expires
            else:
                assert leaving.terminate() == 0  # a clean leave: checkpoint, commit, go
        phases["2 members"] = _wait_settled(groups, 2)
        producer.finish_faults()
        producer.join()
        close_input(kafka, markets.trades, trades, PARTITIONS)  # history: its end closes it
        _wait_for_keys(kafka, markets.indicators, {_key(r) for r in ref_indicators.to_pylist()})
        _wait_for_final_features(kafka, sensors, want_features)
    finally:
        producer.faults_done.set()
        for group in groups:
            for member in group.alive():
                member.terminate()
    print(f"phases (s to settle): {phases}; chunks produced by then: "
          f"{producer.produced_before_done}/{CHUNKS}")
    assert producer.produced_before_done is not None
    assert producer.produced_before_done < CHUNKS, "the stream ended before the last hand-over"

    got_candles = _values_by_key(kafka, markets.candles)
    want_candles = {_key(r): r for r in ref_candles.to_pylist()}
    candles_check = compare_history(got_candles, want_candles)
    got_indicators = _values_by_key(kafka, markets.indicators)
    want_indicators = {_key(r): r for r in ref_indicators.to_pylist()}
    indicators_check = compare_history(got_indicators, want_indicators, _same_indicators)
    # every (feature, client, time) ends on the single process's value (corrections before it)
    features_check = compare_final(_features(kafka, sensors), want_features)
    record_faults("processors scaled 1 -> 3 -> 2", {"member joined": 3 * 2,
                                                     "member SIGTERM": 1, "member kill -9": 2},
                  candles_check + indicators_check + features_check)
    assert candles_check.clean, (candles_check, _differences(got_candles, want_candles))
    # the same trades rejected as late, no more (a window closed early would reject more)
    assert trades_rejected(kafka, markets.dead_letter) == trades_rejected(
        kafka, MarketsTopics.prefixed(unique_topic_prefix + "ref.").dead_letter)
    assert indicators_check.clean, (indicators_check,
                                    _differences(got_indicators, want_indicators,
                                                 _same_indicators))
    assert features_check.clean, features_check

    for group in groups:
        _check_hand_overs(group)


def _wait_for_final_features(kafka: KafkaSettings, topics: SensorTopics,
                             want: dict[tuple[str, str, int], tuple[float, int, int]]) -> None:
    """Until every feature's last message is the reference's (at most 3 minutes; the check
    after it says what differs), then 3 s for a late duplicate."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if {key: values[-1] for key, values in _features(kafka, topics).items()} == want:
            break
        time.sleep(1)
    time.sleep(3)


def _differences(got: dict[str, list[Any]], want: dict[str, Any],
                 same: Callable[[Any, Any], bool] = operator.eq) -> list[tuple[str, Any, Any]]:
    """A few keys whose messages differ from the reference: (key, got, wanted)."""
    return [(key, value, want.get(key)) for key, values in sorted(got.items())
            for value in values if key not in want or not same(value, want[key])][:4]


def _check_hand_overs(group: Group) -> None:
    """State moved with every partition: after the group's first assignment, each partition a
    member got was restored from its checkpoint; a member that left with SIGTERM handed its
    partitions over with a commit, one killed could not."""
    assignments = sorted(
        ((e["timestamp"], member.log_path.name, e) for member in group.members
         for e in _events(member) if e["event"] == "assigned" and e["partitions"]),
        key=lambda item: item[0])
    first, *later = assignments
    assert first[2]["fresh"] == list(range(PARTITIONS)), first
    assert len(later) >= 5, (group.name, [a[:2] for a in assignments])
    for _, name, event in later:
        assert event["fresh"] == [], (group.name, name, event)
        assert event["from_checkpoint"] == event["partitions"], (group.name, name, event)
    if group.name == "windows":  # its state moves with a partition handed over cleanly:
        # the next owner resumes where the last one stopped, not at the committed offset
        resumed = [event for _, _, event in later if event["resumed_at"]]
        assert resumed, (group.name, "no assignment resumed where a hand-over left it")
        for event in resumed:
            numbers = {int(tp.rsplit("[", 1)[1].rstrip("]")) for tp in event["resumed_at"]}
            assert numbers <= set(event["partitions"]), event
    took = [event["took_ms"] for _, _, event in later]
    print(f"{group.name}: {len(later)} assignments restored from checkpoints, "
          f"{max(took):.0f} ms at most")

    leaver = group.members[2]
    events = _events(leaver)
    if group.leaves_with_kill9:
        assert not [e for e in events if e["event"] == "stopped"], group.name
    else:  # its last act: the hand-over of what it consumed since its last assignment
        assigned = [e for e in events if e["event"] == "assigned"][-1]
        revoke = [e for e in events if e["event"] == "revoked"][-1]
        assert events[-1]["event"] == "stopped", events[-1]
        assert revoke["partitions"] == assigned["partitions"], (group.name, revoke)
        assert revoke["consumed"] > assigned["consumed"], (group.name, assigned, revoke)
        assert revoke["committed"], (group.name, revoke)
