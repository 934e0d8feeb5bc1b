"""kill -9 of the sensor window and join processors at random moments of a live stream, then
restart: the feature topics hold exactly the features of an uninterrupted run (a duplicate with
the identical value is allowed, a different value is not), and the predictions end on the same
latest vector per client. (Which events find a client's vector complete depends on how the five
input topics interleave on arrival, which no two runs share; the latest values do not.)"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from streaming.pipelines.sensors import SensorTopics, produce_events, run_sensors_through_stream
from streaming.runtime.topic_reader import read_topic
from streaming.settings import KafkaSettings, TopicSettings
from streaming.sources.sensors_simulator import SimulatorConfig, simulate
from streaming.topics import ensure_topics
from tests.support.processes import BraidProcess

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
    reference = run_sensors_through_stream(events, kafka_settings,
                                           topic_prefix=unique_topic_prefix + "ref.",
                                           grace_ms=3_000, partitions=PARTITIONS)
    want = {(r["client"], r["timestamp_ms"]): r for r in reference.features.to_pylist()}

    prefix = unique_topic_prefix + "run."
    topics = SensorTopics.prefixed(prefix)
    ensure_topics(kafka_settings, topics.specs(PARTITIONS), TopicSettings())
    common = ["--topic-prefix", prefix, "--partitions", str(PARTITIONS)]
    windows = BraidProcess(["sensors", "windows", "--grace", GRACE, "--idle-timeout", "2s",
                            "--batch-size", "300", *common], kafka_settings,
                           tmp_path / "windows.log").start()
    join = BraidProcess(["sensors", "join", "--model", "builtin", "--batch-size", "300", *common],
                        kafka_settings,
                        tmp_path / "join.log").start()
    producer = threading.Thread(target=_produce_slowly, args=(kafka_settings, topics, events,
                                                              25.0))
    producer.start()
    rng = random.Random(3)
    try:
        for victim in (windows, join, windows, join, windows):
            victim.wait_for_log('"event": "assigned"', victim.starts)
            time.sleep(rng.uniform(0.5, 2.5))
            victim.kill9()
            victim.start()
        producer.join()
        _wait_for(kafka_settings, topics, len(want))
        time.sleep(8)  # let the join drain
    finally:
        for process in (windows, join):
            if process.alive():
                process.terminate()
    assert windows.log_path.read_text().count(f'"restored": {PARTITIONS}') >= 2

    for name in ("FA", "FI", "FD"):
        got: dict[tuple[str, int], list[dict]] = {}
        for row in _rows(kafka_settings, topics.of(name)):
            got.setdefault((row["client"], row["timestamp_ms"]), []).append(row)
        assert got.keys() == want.keys(), name
        for key, rows in got.items():
            for row in rows:
                assert (row["value"], row["bin"], row["count"]) == (
                    want[key][name], want[key][f"{name}_bin"], want[key]["count"]), key

    def last_vectors(rows: list[dict]) -> dict[str, list[int]]:
        return {r["client"]: r["vector"] for r in rows}  # topic order: the last one wins

    got_predictions = _rows(kafka_settings, topics.predictions)
    ref_predictions = reference.predictions.to_pylist()
    assert last_vectors(got_predictions) == last_vectors(ref_predictions)
