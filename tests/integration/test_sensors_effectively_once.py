"""kill -9 (and SIGTERM) of the sensor window and join processors at random moments of a live
stream, then restart: the feature topics hold exactly the features of an uninterrupted run (a
duplicate with the identical value is allowed, a different value is not), and the predictions
end on the same latest vector per client. Every prediction emitted, duplicates included, is
checked against independent facts (`_check_every_prediction`). (Which events find a client's
vector complete, and what the join holds for the other fields when an event arrives, depend on
how the five input topics interleave on arrival, which no two runs share; the latest values do
not.)

And kill -9 of the broker itself mid-stream, restarted from its log directory: every reading
stored once, the same features, the same latest predictions, with no processor restarted."""

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
from features.sensors.schemas import CATEGORICAL_SENSORS, VECTOR_FIELDS
from features.sensors.simulator import SimulatorConfig, simulate
from infra.testing import BrokerStack
from streaming.pipelines.sensors import (
    SensorTopics,
    StreamResult,
    produce_events,
    run_sensors_through_stream,
)
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.topics import ensure_topics
from tests.support.history_checker import HistoryCheck, compare_history
from tests.support.processes import BraidProcess
from tests.support.reliability_report import record_faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
GRACE = "3s"


def _produce_slowly(kafka: KafkaSettings, topics: SensorTopics, events: pa.Table,
                    seconds: float) -> None:
    chunks = 30
    size = -(-events.num_rows // chunks)
    for i in range(chunks):
        produce_events(kafka, topics, events.slice(i * size, size), PARTITIONS)
        time.sleep(seconds / chunks)


def _rows(kafka: KafkaSettings, topic: str) -> list[dict]:
    return [orjson.loads(v) for _, _, _, v in read_topic(kafka, topic) if v is not None]


def _wait_for(kafka: KafkaSettings, topics: SensorTopics, want: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        keys = {(r["client"], r["timestamp_ms"]) for r in _rows(kafka, topics.FD)}
        if len(keys) >= want:
            return
        time.sleep(1)
    raise TimeoutError("the features never caught up")


def test_kill_9_and_restart_give_exactly_the_uninterrupted_features(
    kafka_settings: KafkaSettings, unique_topic_prefix: str, tmp_path: Path
) -> None:
    # arrival delays up to 6 s against a 3 s grace: late readings are part of the replay too
    events = simulate(SimulatorConfig(clients=16, duration_ms=45 * 60_000, disorder_ms=6_000,
                                      seed=9))
    reference, want = _reference(kafka_settings, events, unique_topic_prefix)
    topics, windows, join = _start_processors(kafka_settings, unique_topic_prefix + "run.",
                                              "2s", tmp_path)
    producer = threading.Thread(target=_produce_slowly, args=(kafka_settings, topics, events,
                                                              25.0))
    producer.start()
    rng = random.Random(3)
    try:
        for victim, hard in ((windows, True), (join, True), (windows, False), (join, False),
                             (windows, True)):  # kill -9, or SIGTERM (a clean stop)
            victim.wait_for_log('"event": "assigned"', victim.starts)
            time.sleep(rng.uniform(0.5, 2.5))
            if hard:
                victim.kill9()
            else:
                assert victim.terminate() == 0
            victim.start()
        producer.join()
        _wait_for(kafka_settings, topics, len(want))
        _wait_for_latest_vectors(kafka_settings, topics.predictions,
                                 _last_vectors(reference.predictions.to_pylist()))
    finally:
        for process in (windows, join):
            if process.alive():
                process.terminate()
    assert windows.log_path.read_text().count(f'"restored": {PARTITIONS}') >= 2

    check = _feature_history(kafka_settings, topics, want)
    got_predictions = _rows(kafka_settings, topics.predictions)
    record_faults("sensor processors killed", {"kill -9": 3, "SIGTERM": 2}, check)
    assert check.clean, check

    ref_predictions = reference.predictions.to_pylist()
    # how many events find a complete vector depends on how the join's five topics interleave
    # (893 and over 1,000 were both seen): a floor that shows the run predicted, not a value
    assert len(ref_predictions) > 300
    assert _last_vectors(got_predictions) == _last_vectors(ref_predictions)
    _check_every_prediction(got_predictions, events, want)


def _reference(kafka: KafkaSettings, events: pa.Table, prefix: str
               ) -> tuple[StreamResult, dict[tuple[str, int], dict]]:
    """The uninterrupted run (on its own topics) and its feature rows by (client, time)."""
    reference = run_sensors_through_stream(events, kafka, topic_prefix=prefix + "ref.",
                                           grace_ms=3_000, partitions=PARTITIONS)
    return reference, {(r["client"], r["timestamp_ms"]): r
                       for r in reference.features.to_pylist()}


def _start_processors(kafka: KafkaSettings, prefix: str, idle_timeout: str, tmp_path: Path
                      ) -> tuple[SensorTopics, BraidProcess, BraidProcess]:
    """The topics under `prefix`, and the window and join processors started on them."""
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka, topics.specs(PARTITIONS), TopicSettings())
    common = ["--topic-prefix", prefix, "--partitions", str(PARTITIONS)]
    windows = BraidProcess(["sensors", "windows", "--grace", GRACE, "--idle-timeout",
                            idle_timeout, "--batch-size", "300", *common], kafka,
                           tmp_path / "windows.log").start()
    join = BraidProcess(["sensors", "join", "--model", "builtin", "--batch-size", "300", *common],
                        kafka, tmp_path / "join.log").start()
    return topics, windows, join


def _feature_history(kafka: KafkaSettings, topics: SensorTopics,
                     want: dict[tuple[str, int], dict]) -> HistoryCheck:
    """Every FA, FI, FD message against the uninterrupted run's (value, bin, count)."""
    got: dict[tuple[str, str, int], list[tuple[float, int, int]]] = {}
    expected: dict[tuple[str, str, int], tuple[float, int, int]] = {}
    for name in ("FA", "FI", "FD"):
        for row in _rows(kafka, topics.of(name)):
            got.setdefault((name, row["client"], row["timestamp_ms"]), []).append(
                (row["value"], row["bin"], row["count"]))
        expected |= {(name, *key): (r[name], r[f"{name}_bin"], r["count"])
                     for key, r in want.items()}
    return compare_history(got, expected)


def _last_vectors(rows: list[dict]) -> dict[str, list[int]]:
    return {r["client"]: r["vector"] for r in rows}  # topic order: the last one wins


def _wait_for_latest_vectors(kafka: KafkaSettings, topic: str,
                             want: dict[str, list[int]]) -> None:
    """Let the join drain: wait until every client's latest prediction is the uninterrupted
    run's (at most 2 minutes; the assertion after it says what differs), then 3 s for a late
    duplicate."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _last_vectors(_rows(kafka, topic)) != want:
        time.sleep(1)
    time.sleep(3)


def _check_every_prediction(predictions: list[dict], events: pa.Table,
                            features: dict[tuple[str, int], dict]) -> None:
    """Every emitted prediction, duplicates included, against independent facts: the
    component of the field that triggered it is that event's true value (the SX/SY reading, or
    the uninterrupted run's FA/FI/FD bin), its probability is the logistic of its vector
    computed here by hand from the model's parameters; so a duplicate (a replay after kill -9)
    agrees with the first on both. (The other components are the values the join held when the
    event arrived, which depends on how the five topics interleaved: a replay may see another.)"""
    readings = {(r["sensor"], r["client"], r["timestamp_ms"]): int(r["value"])
                for r in events.to_pylist() if r["sensor"] in CATEGORICAL_SENSORS}
    index = {name: i for i, name in enumerate(VECTOR_FIELDS)}
    possible: dict[tuple[str, str], set[int]] = {}  # (client, field) -> values it ever had
    for (sensor, client, _), value in readings.items():
        possible.setdefault((client, sensor), set()).add(value)
    for (client, _), row in features.items():
        for name in VECTOR_FIELDS[len(CATEGORICAL_SENSORS):]:
            possible.setdefault((client, name), set()).add(row[f"{name}_bin"])
    model = DEFAULT_MODEL
    assert predictions
    for p in predictions:
        trigger, key = p["trigger"], (p["client"], p["timestamp_ms"])
        truth = (readings[(trigger, *key)] if trigger in CATEGORICAL_SENSORS
                 else features[key][f"{trigger}_bin"])
        assert p["vector"][index[trigger]] == truth, p
        for name, value in zip(VECTOR_FIELDS, p["vector"], strict=True):
            assert value in possible[(p["client"], name)], (name, p)
        z = model.intercept + sum(c * v for c, v in zip(model.coefficients, p["vector"],
                                                           strict=True))
        assert p["probability"] == pytest.approx(1.0 / (1.0 + math.exp(-z)), rel=1e-12), p
        assert p["model_version"] == model.version


def test_broker_kill_9_mid_stream_loses_no_reading_feature_or_prediction(
    broker_stack: BrokerStack, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """The broker is killed (kill -9) and started again from its log directory while readings
    flow; the producer and both processors reconnect by themselves: every reading is stored
    once, every feature message equals the uninterrupted run's, and the predictions agree.

    The idle timeout is longer than the outage: a window also closes on wall-clock silence, and
    a processor that cannot reach the broker sees exactly that."""
    kafka = broker_stack.kafka_settings
    events = simulate(SimulatorConfig(clients=12, duration_ms=30 * 60_000, disorder_ms=6_000,
                                      seed=11))
    reference, want = _reference(kafka, events, unique_topic_prefix)
    prefix = unique_topic_prefix + "run."
    topics, windows, join = _start_processors(kafka, prefix, "25s", tmp_path)
    producer = threading.Thread(target=_produce_slowly, args=(kafka, topics, events, 20.0))
    try:
        windows.wait_for_log('"event": "assigned"', 1)
        join.wait_for_log('"event": "assigned"', 1)
        producer.start()
        time.sleep(4)
        broker_stack.restart_broker(hard=True)
        producer.join()
        _wait_for(kafka, topics, len(want))
        _wait_for_latest_vectors(kafka, topics.predictions,
                                 _last_vectors(reference.predictions.to_pylist()))
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

    check = _feature_history(kafka, topics, want)
    record_faults("broker killed and restarted (sensors)", {"broker kill -9": 1}, check)
    assert check.clean, check
    got_predictions = _rows(kafka, topics.predictions)
    assert _last_vectors(got_predictions) == _last_vectors(reference.predictions.to_pylist())
    _check_every_prediction(got_predictions, events, want)
