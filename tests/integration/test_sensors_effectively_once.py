"""kill -9 (and SIGTERM) of the sensor window and join processors at random moments of a live
stream, then restart: every feature (client, feature, time) and every prediction key ends on
the uninterrupted run's value, byte for byte (corrections and replayed duplicates before it are
allowed: `tests.support.history_checker.compare_final`); and a replay of the topics from the
beginning into fresh consumer groups (the window processor over SZ, and a join over the faulted
run's own feature topics, duplicates, corrections and re-emissions included) ends on the same
predictions, byte for byte. Every prediction message's probability is checked by hand against
the model, and the final vectors are the training rows of the same events.

And kill -9 of the broker itself mid-stream, restarted from its log directory: every reading
stored once, the same final features and predictions, with no processor restarted."""

from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from features.sensors.model import DEFAULT_MODEL
from features.sensors.simulator import SimulatorConfig, simulate
from infra.testing import BrokerStack
from streaming.pipelines.sensors import (
    SensorTopics,
    join_processor,
    produce_events,
    run_sensors_through_stream,
    window_processor,
)
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import ensure_topics
from tests.support.history_checker import HistoryCheck, compare_final
from tests.support.processes import BraidProcess
from tests.support.reliability_report import record_faults
from training.sensors_baseline import training_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
GRACE = "3s"
GRACE_MS = 3_000


def _produce_slowly(kafka: KafkaSettings, topics: SensorTopics, events: pa.Table,
                    seconds: float) -> None:
    chunks = 30
    size = -(-events.num_rows // chunks)
    for i in range(chunks):
        produce_events(kafka, topics, events.slice(i * size, size), PARTITIONS)
        time.sleep(seconds / chunks)


def _messages(kafka: KafkaSettings, topic: str) -> dict[bytes, list[bytes]]:
    """Every message of `topic` by key, in topic order."""
    out: dict[bytes, list[bytes]] = {}
    for _, _, key, value in read_topic(kafka, topic):
        if value is not None:
            out.setdefault(key or b"", []).append(value)
    return out


def _final(kafka: KafkaSettings, topic: str) -> dict[bytes, bytes]:
    return {key: values[-1] for key, values in _messages(kafka, topic).items()}


def _features(kafka: KafkaSettings, topics: SensorTopics) -> dict[tuple[str, str, int],
                                                                  list[tuple[float, int, int]]]:
    """Every FA, FI, FD message as (value, bin, count), by (feature, client, time)."""
    got: dict[tuple[str, str, int], list[tuple[float, int, int]]] = {}
    for name in ("FA", "FI", "FD"):
        for values in _messages(kafka, topics.of(name)).values():
            for raw in values:
                row = orjson.loads(raw)
                got.setdefault((name, row["client"], row["timestamp_ms"]), []).append(
                    (row["value"], row["bin"], row["count"]))
    return got


def _wait_for_final(kafka: KafkaSettings, topic: str, want: dict[bytes, bytes]) -> None:
    """Let the join drain: until every prediction key ends on the reference's value (at most 3
    minutes; the assertions after it say what differs), then 3 s for a late duplicate."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and _final(kafka, topic) != want:
        time.sleep(1)
    time.sleep(3)


def _reference(kafka: KafkaSettings, events: pa.Table, prefix: str
               ) -> tuple[dict[bytes, bytes], dict[tuple[str, str, int], tuple[float, int, int]]]:
    """The uninterrupted run (on its own topics): its final predictions and features."""
    reference = run_sensors_through_stream(events, kafka, topic_prefix=prefix + "ref.",
                                           grace_ms=GRACE_MS, partitions=PARTITIONS)
    want = _final(kafka, reference.topics.predictions)
    features = {key: values[-1] for key, values in _features(kafka, reference.topics).items()}
    # the reference's final vectors are the training rows of the same events
    rows = training_rows(events, grace_ms=GRACE_MS, partitions=PARTITIONS)
    trained = {f"{c}|{t}|{g}".encode(): v.tolist() for c, t, g, v in zip(
        rows.clients, rows.timestamps_ms.tolist(), rows.triggers, rows.vectors, strict=True)}
    assert {k: orjson.loads(v)["vector"] for k, v in want.items()} == trained
    assert len(trained) > 3_000
    return want, features


def _start_processors(kafka: KafkaSettings, prefix: str, tmp_path: Path
                      ) -> tuple[SensorTopics, BraidProcess, BraidProcess]:
    """The topics under `prefix`, and the window and join processors started on them."""
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    common = ["--topic-prefix", prefix, "--partitions", str(PARTITIONS), "--batch-size", "300",
              "--grace", GRACE]
    windows = BraidProcess(["sensors", "windows", *common], kafka,
                           tmp_path / "windows.log").start()
    join = BraidProcess(["sensors", "join", "--model", "builtin", *common], kafka,
                        tmp_path / "join.log").start()
    return topics, windows, join


def _check(kafka: KafkaSettings, topics: SensorTopics, want: dict[bytes, bytes],
           features: dict[tuple[str, str, int], tuple[float, int, int]]) -> HistoryCheck:
    """Features and predictions of a faulted run: each key's last message is the reference's;
    every prediction message's probability is the model's for its vector."""
    check = compare_final(_features(kafka, topics), features)
    messages = _messages(kafka, topics.predictions)
    check += compare_final(messages, want)
    model = DEFAULT_MODEL
    for key, values in messages.items():
        for raw in values:
            p = orjson.loads(raw)
            assert key == f"{p['client']}|{p['timestamp_ms']}|{p['trigger']}".encode()
            z = model.intercept + sum(c * v for c, v in zip(model.coefficients, p["vector"],
                                                               strict=True))
            assert p["probability"] == pytest.approx(1.0 / (1.0 + math.exp(-z)), rel=1e-12)
            assert p["model_version"] == model.version
    return check


def test_kill_9_and_sigterm_of_both_processors_then_a_replay_end_on_the_same_predictions(
    kafka_settings: KafkaSettings, unique_topic_prefix: str, tmp_path: Path
) -> None:
    # arrival delays up to 6 s against a 3 s grace: late readings are part of the replay too
    events = simulate(SimulatorConfig(clients=16, duration_ms=45 * 60_000, disorder_ms=6_000,
                                      seed=9))
    want, features = _reference(kafka_settings, events, unique_topic_prefix)
    topics, windows, join = _start_processors(kafka_settings, unique_topic_prefix + "run.",
                                              tmp_path)
    producer = threading.Thread(target=_produce_slowly, args=(kafka_settings, topics, events,
                                                              25.0))
    producer.start()
    rng = random.Random(3)
    try:
        for victim, hard in ((windows, True), (join, True), (windows, False), (join, False),
                             (windows, True), (join, True)):  # kill -9, or SIGTERM (clean)
            victim.wait_for_log('"event": "assigned"', victim.starts)
            time.sleep(rng.uniform(0.5, 2.5))
            if hard:
                victim.kill9()
            else:
                assert victim.terminate() == 0
            victim.start()
        producer.join()
        _wait_for_final(kafka_settings, topics.predictions, want)
    finally:
        for process in (windows, join):
            if process.alive():
                process.terminate()
    for process in (windows, join):
        assert process.log_path.read_text().count(f'"restored": {PARTITIONS}') >= 2

    check = _check(kafka_settings, topics, want, features)
    record_faults("sensor processors killed", {"kill -9": 4, "SIGTERM": 2}, check)
    assert check.clean, check

    # a replay from the beginning into fresh groups: the window processor over the run's SZ
    # into new feature topics, and a join over those
    replay = SensorTopics.prefixed(unique_topic_prefix + "replay.")
    replay = SensorTopics(topics.SX, topics.SY, topics.SZ, replay.FA, replay.FI, replay.FD,
                          replay.predictions, replay.dead_letter, replay.checkpoints)
    ensure_topics(kafka_settings, replay.specs(PARTITIONS), TopicSettings())
    window_processor(kafka_settings, grace_ms=GRACE_MS, topics=replay,
                     group=f"{unique_topic_prefix}replay-windows").run(
        max_idle_s=3, install_signals=False)
    join_processor(kafka_settings, grace_ms=GRACE_MS, topics=replay,
                   group=f"{unique_topic_prefix}replay-join").run(
        max_idle_s=3, install_signals=False)
    assert _final(kafka_settings, replay.predictions) == want
    # and a fresh join over the faulted run's own feature topics: every re-emission, correction
    # and duplicate the kills left there
    rejoin = SensorTopics.prefixed(unique_topic_prefix + "rejoin.")
    rejoin = SensorTopics(topics.SX, topics.SY, topics.SZ, topics.FA, topics.FI, topics.FD,
                          rejoin.predictions, rejoin.dead_letter, rejoin.checkpoints)
    ensure_topics(kafka_settings, rejoin.specs(PARTITIONS), TopicSettings())
    join_processor(kafka_settings, grace_ms=GRACE_MS, topics=rejoin,
                   group=f"{unique_topic_prefix}rejoin").run(max_idle_s=3, install_signals=False)
    assert _final(kafka_settings, rejoin.predictions) == want


def test_broker_kill_9_mid_stream_loses_no_reading_feature_or_prediction(
    broker_stack: BrokerStack, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """The broker is killed (kill -9) and started again from its log directory while readings
    flow; the producer and both processors reconnect by themselves: every reading is stored
    once, every feature and prediction key ends on the uninterrupted run's value."""
    kafka = broker_stack.kafka_settings
    events = simulate(SimulatorConfig(clients=12, duration_ms=30 * 60_000, disorder_ms=6_000,
                                      seed=11))
    want, features = _reference(kafka, events, unique_topic_prefix)
    prefix = unique_topic_prefix + "run."
    topics, windows, join = _start_processors(kafka, prefix, tmp_path)
    producer = threading.Thread(target=_produce_slowly, args=(kafka, topics, events, 20.0))
    try:
        windows.wait_for_log('"event": "assigned"', 1)
        join.wait_for_log('"event": "assigned"', 1)
        producer.start()
        time.sleep(4)
        broker_stack.restart_broker(hard=True)
        producer.join()
        _wait_for_final(kafka, topics.predictions, want)
        assert windows.alive() and join.alive(), "a processor died with the broker"
    finally:
        for process in (windows, join):
            if process.alive():
                process.terminate()

    # every reading stored, once (the producer is idempotent across the outage)
    stored = [(topic.removeprefix(prefix), orjson.loads(v)) for topic in
              (topics.SX, topics.SY, topics.SZ)
              for _, _, _, v in read_topic(kafka, topic) if v is not None]
    keys = [(sensor, r["client"], r["timestamp_ms"]) for sensor, r in stored]
    assert len(keys) == len(set(keys)) == events.num_rows

    check = _check(kafka, topics, want, features)
    record_faults("broker killed and restarted (sensors)", {"broker kill -9": 1}, check)
    assert check.clean, check
