"""Braid on a replicated Kafka cluster (3 nodes, each broker and controller; topics with 3
replicas, `min.insync.replicas` 2): the markets pipeline (trades -> candles -> indicators ->
online sink) and the sensors window and join processors run while one node is killed with -9
and started again, twice, the second time the active controller. Every output message equals
an uninterrupted run's (`tests/support/history_checker.py`), every acknowledged input is stored
once, and no processor restarts: the clients ride the leader elections by themselves.

The processors' idle timeout is longer than an outage, as a live deployment's should be: a
partition whose leader died takes seconds to get a new one, and a processor that cannot see new
messages must not take that for a quiet key. (The synthetic trades are history, which never
closes on idle: the end of the input is a closure record per pair.)"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from rich.console import Console

from cli import stack as cli_stack
from features.indicators import INDICATOR_COLUMNS
from features.schemas.window_closure import is_closure
from features.sensors.simulator import SimulatorConfig, simulate
from infra import stack
from infra.testing import KafkaCluster
from streaming.pipelines.markets import (
    MarketsTopics,
    close_input,
    produce_trades,
    run_trades_through_stream,
)
from streaming.pipelines.sensors import produce_events
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import ONLINE_WRITES, catalogue, ensure_topics
from tests.integration.serving.offline_tables import local_repo
from tests.integration.test_markets_effectively_once import (
    _key,
    _same_indicators,
    _trades,
    _values_by_key,
    _wait_for_keys,
    json_key,
)
from tests.integration.test_sensors_effectively_once import (
    _check,
    _reference,
    _start_processors,
    _wait_for_final,
)
from tests.support.history_checker import compare_history
from tests.support.paced_producer import PacedProducer
from tests.support.processes import BraidProcess
from tests.support.reliability_report import record_faults

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

PARTITIONS = 4
CHUNKS = 200  # at 0.6 s: the stream flows for up to 2 minutes of node kills


@dataclass
class NodeFault:
    node: int
    was_controller: bool
    back_in_sync_s: float  # from the kill until every replica was in sync again


def _kill_twice(cluster: KafkaCluster, producer: PacedProducer, leader_of: str) -> list[NodeFault]:
    """Once the stream flows: kill -9 a node that is not the active controller (the leader of
    partition 0 of `leader_of` where it can), start it again, wait until every replica is in
    sync; then the same for the active controller. Runs in the test's own thread: a node
    started from a thread that ends would get its parent-death signal."""
    producer.started.wait(120)
    faults = []
    for want_controller in (False, True):
        controller = cluster.active_controller()
        if want_controller:
            victim = controller
        else:
            leader = _partition_leader(cluster.kafka_settings, leader_of)
            victim = leader if leader != controller else next(
                n for n in cluster.node_ids if n != controller)
        began = time.monotonic()
        cluster.kill(victim)
        time.sleep(2)  # a moment with the node down, then it is started again
        cluster.start(victim)
        cluster.wait_in_sync(timeout_s=240)
        faults.append(NodeFault(victim, victim == controller, time.monotonic() - began))
    producer.finish_faults()
    assert [f.was_controller for f in faults] == [False, True]
    assert producer.produced_before_done is not None
    assert producer.produced_before_done < CHUNKS, "the stream ended before the second kill"
    return faults


def _partition_leader(kafka: KafkaSettings, topic: str) -> int:
    admin = AdminClient(kafka.client_config())
    return int(admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader)


def _producer(produce: Callable[[int, int], object]) -> PacedProducer:
    """200 chunks 0.6 s apart while the nodes are killed and restarted, the rest at once."""
    return PacedProducer(produce, CHUNKS, pace_s=0.6, started_chunks=10)


def test_topics_and_internal_topics_have_three_replicas_and_status_shows_each_node(
        kafka_cluster: KafkaCluster, unique_topic_prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = kafka_cluster.kafka_settings
    rows = stack.status(kafka_cluster.settings)
    assert [r.name for r in rows] == ["broker-1", "broker-2", "broker-3"]
    assert all(r.alive and r.healthy and r.pid for r in rows)
    shown = io.StringIO()
    monkeypatch.setattr(cli_stack, "console", Console(file=shown, width=250))
    cli_stack.status(state_dir=kafka_cluster.settings.state_dir)  # `braid status`: exit 0
    for row in rows:
        assert f"│ {row.name} " in shown.getvalue() and f"│ {row.pid} " in shown.getvalue()

    # Braid's topics as `braid up` creates them: no replication given, the cluster's defaults
    specs = [replace(spec, name=unique_topic_prefix + spec.name) for spec in catalogue()]
    ensure_topics(kafka, specs, TopicSettings())
    consumer = Consumer({**kafka.client_config(), "group.id": unique_topic_prefix + "probe"})
    consumer.subscribe([specs[0].name])  # a group: the offsets topic exists from then on
    admin = AdminClient(kafka.client_config())
    deadline = time.monotonic() + 60
    while "__consumer_offsets" not in (topics := admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, "no __consumer_offsets"
        consumer.poll(0.5)
    consumer.close()
    for name in [spec.name for spec in specs] + ["__consumer_offsets"]:
        for partition in topics[name].partitions.values():
            assert sorted(partition.replicas) == [1, 2, 3], (name, partition.id)
    described = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, spec.name) for spec in specs])
    for resource, future in described.items():
        assert future.result()["min.insync.replicas"].value == "2", resource.name
    broker = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")])
    config = {k: v.value for k, v in next(iter(broker.values())).result().items()}
    assert config["default.replication.factor"] == "3"
    assert config["offsets.topic.replication.factor"] == "3"
    assert config["transaction.state.log.replication.factor"] == "3"
    assert config["transaction.state.log.min.isr"] == "2"
    assert config["unclean.leader.election.enable"] == "false"


def test_markets_pipeline_through_two_node_kills_equals_an_uninterrupted_run(
        kafka_cluster: KafkaCluster, unique_topic_prefix: str, tmp_path: Path) -> None:
    kafka = kafka_cluster.kafka_settings
    trades = _trades()
    prefix = unique_topic_prefix + "run."
    topics = MarketsTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    store = local_repo(tmp_path / "repo", tmp_path / "offline")  # an online store to fill
    env = {"BRAID_TOPIC_MARKET_PARTITIONS": str(PARTITIONS)}
    common = ["--topic-prefix", prefix]
    processors = [
        BraidProcess(["markets", "candles", "-d", "60s", "--grace", "2s", "--idle-timeout",
                      "25s", "--batch-size", "500", *common], kafka, tmp_path / "candles.log",
                     env),
        BraidProcess(["markets", "indicators", *common], kafka, tmp_path / "indicators.log",
                     env),
        # one message per batch: the sink logs every row it writes (a batch keeps only the
        # newest per pair), so its log can be checked row by row
        BraidProcess(["online-sink", "--pipeline", "markets", "--repo", str(tmp_path / "repo"),
                      "--group", prefix + "sink", "--batch-size", "1", *common], kafka,
                     tmp_path / "sink.log", env),
    ]
    size = -(-trades.num_rows // CHUNKS)
    producer = _producer(lambda start, stop: produce_trades(
        kafka, topics.trades, trades.slice(start * size, (stop - start) * size), PARTITIONS))
    try:
        for process in processors:
            process.start()
        # the uninterrupted run, on topics of its own, while the processors start
        reference_candles, reference_indicators = run_trades_through_stream(
            trades, kafka, durations=[60_000], grace_ms=2_000,
            topic_prefix=unique_topic_prefix + "ref.", partitions=PARTITIONS,
            idle_timeout_ms=3_000)
        assert reference_candles.num_rows > 80 and reference_indicators.num_rows > 80
        for process in processors:
            process.wait_for_log('"event": "assigned"', 1, timeout_s=180)
        producer.start()
        faults = _kill_twice(kafka_cluster, producer, topics.trades)
        producer.join()
        close_input(kafka, topics.trades, trades, PARTITIONS)  # history: its end closes it
        _wait_for_keys(kafka, topics.indicators,
                       {_key(r) for r in reference_indicators.to_pylist()})
        want_log = _sink_reference(reference_candles, reference_indicators)
        _wait_for_log_keys(kafka, prefix + ONLINE_WRITES, set(want_log))
        assert all(p.alive() for p in processors), "a processor died"
    finally:
        producer.faults_done.set()
        for process in processors:
            if process.alive():
                process.terminate()
    assert [p.starts for p in processors] == [1, 1, 1]
    print(f"node kills: {faults}")

    stored = [v for *_, v in read_topic(kafka, topics.trades) if not is_closure(v)]
    assert len(stored) == len({json_key(v) for v in stored}) == trades.num_rows  # each, once
    candles_check = compare_history(_values_by_key(kafka, topics.candles),
                                    {_key(r): r for r in reference_candles.to_pylist()})
    indicators_check = compare_history(_values_by_key(kafka, topics.indicators),
                                       {_key(r): r for r in reference_indicators.to_pylist()},
                                       _same_indicators)
    sink_check = compare_history(_sink_log(kafka, prefix + ONLINE_WRITES), want_log,
                                 _same_values)
    record_faults("markets pipeline on 3 nodes, nodes killed",
                  {"node kill -9": 1, "controller kill -9": 1},
                  candles_check + indicators_check + sink_check)
    assert candles_check.clean, candles_check
    assert indicators_check.clean, indicators_check
    assert sink_check.clean, sink_check
    # the same trades rejected as late, no more (a window closed early would reject more)
    assert trades_rejected(kafka, topics.dead_letter) == trades_rejected(
        kafka, MarketsTopics.prefixed(unique_topic_prefix + "ref.").dead_letter)
    assert candles_check.checked >= reference_candles.num_rows

    # the online store ends on each pair's last candle and indicator row of the reference
    for view, table in (("candles_1m", reference_candles),
                        ("indicators_1m", reference_indicators)):
        last = {r["pair"]: r for r in table.to_pylist()}  # sorted by window: the last wins
        columns = ["close", *INDICATOR_COLUMNS] if view.startswith("indicators") else [
            "open", "high", "low", "close", "volume", "vwap", "trade_count"]
        for pair, row in last.items():
            online = store.get_online_features(
                features=[f"{view}:{c}" for c in ("window_start_ms", *columns)],
                entity_rows=[{"pair": pair}]).to_dict()
            assert online["window_start_ms"] == [row["window_start_ms"]], (view, pair)
            values = {column: online[column][0] for column in columns}
            assert _same_values(values, row), (view, pair, values)
    letters = [orjson.loads(v) for *_, v in read_topic(kafka, topics.dead_letter) if v]
    assert not [letter for letter in letters if "online-sink" in str(letter)]


def trades_rejected(kafka: KafkaSettings, topic: str) -> set[tuple[str, str, int]]:
    """(reason, pair, trade id) of every trade the candle processor dead-lettered (closure
    records aside: they carry the wall clock of their decision)."""
    rejected = set()
    for *_, value in read_topic(kafka, topic):
        letter = orjson.loads(value or b"{}")
        raw = (letter.get("value") or "").encode()
        if letter.get("processor", "").endswith("candles") and not is_closure(raw):
            trade = orjson.loads(raw)
            rejected.add((letter["reason"], trade["pair"], trade["trade_id"]))
    return rejected


def _sink_reference(candles: pa.Table, indicators: pa.Table
                    ) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The uninterrupted run's rows as the sink logs them: (view, pair, window end) -> row."""
    return {(view, r["pair"], r["window_end_ms"]): r
            for view, table in (("candles_1m", candles), ("indicators_1m", indicators))
            for r in table.to_pylist()}


def _sink_log(kafka: KafkaSettings, topic: str) -> dict[tuple[str, str, int], list[Any]]:
    out: dict[tuple[str, str, int], list[Any]] = {}
    for *_, value in read_topic(kafka, topic):
        if value is not None:
            entry = orjson.loads(value)
            out.setdefault((entry["view"], entry["entity"], entry["event_ms"]), []).append(
                entry["values"])
    return out


def _same_values(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Every value the sink wrote equals the reference row's (null written for NaN)."""
    for name, value in got.items():
        if name not in want:
            continue
        expected = want[name]
        if isinstance(expected, float) and math.isnan(expected):
            if value is not None and not math.isnan(value):
                return False
        elif value != expected:
            return False
    return True


def _wait_for_log_keys(kafka: KafkaSettings, topic: str, want: set[Any]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if not want - set(_sink_log(kafka, topic)):
            time.sleep(3)  # a late duplicate would be seen too
            return
        time.sleep(1)
    raise TimeoutError(f"{topic} lacks rows: {sorted(want - set(_sink_log(kafka, topic)))[:3]}")


def test_sensor_windows_and_join_through_two_node_kills_equal_an_uninterrupted_run(
        kafka_cluster: KafkaCluster, unique_topic_prefix: str, tmp_path: Path) -> None:
    kafka = kafka_cluster.kafka_settings
    events = simulate(SimulatorConfig(clients=12, duration_ms=30 * 60_000, disorder_ms=6_000,
                                      seed=11))
    topics, windows, join = _start_processors(kafka, unique_topic_prefix + "run.", tmp_path)
    size = -(-events.num_rows // CHUNKS)
    producer = _producer(lambda start, stop: produce_events(
        kafka, topics, events.slice(start * size, (stop - start) * size), PARTITIONS))
    try:
        want, features = _reference(kafka, events, unique_topic_prefix)  # while they start
        windows.wait_for_log('"event": "assigned"', 1, timeout_s=180)
        join.wait_for_log('"event": "assigned"', 1, timeout_s=180)
        producer.start()
        faults = _kill_twice(kafka_cluster, producer, topics.SZ)
        producer.join()
        _wait_for_final(kafka, topics.predictions, want)
        assert windows.alive() and join.alive(), "a processor died"
    finally:
        producer.faults_done.set()
        for process in (windows, join):
            if process.alive():
                process.terminate()
    assert (windows.starts, join.starts) == (1, 1)
    print(f"node kills: {faults}")

    stored = [(topic, orjson.loads(v)) for topic in (topics.SX, topics.SY, topics.SZ)
              for *_, v in read_topic(kafka, topic) if v is not None]
    keys = [(topic, r["client"], r["timestamp_ms"]) for topic, r in stored]
    assert len(keys) == len(set(keys)) == events.num_rows  # every reading, once

    # every feature and prediction key ends on the uninterrupted run's value, byte for byte,
    # and every prediction's probability is the model's for its vector
    check = _check(kafka, topics, want, features)
    record_faults("sensors on 3 nodes, nodes killed",
                  {"node kill -9": 1, "controller kill -9": 1}, check)
    assert check.clean, check

