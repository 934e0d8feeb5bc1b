"""The sensors model is trained on the vectors the stream serves: simulated readings go through
the real window and join operators in live order (each event handed over at its event time,
every emission of the window operator passed on at once, in one poll of the join), and the
join's final vector for each SZ reading equals the training row
`training.sensors_baseline.training_rows` builds for it, field for field.

Training on SX and SY as of the reading's own time (grace 0) would not: the join sees a
reading's features only once they are final, `grace` later, and pairs them with the SX and SY it
holds then."""

from __future__ import annotations

import numpy as np
import orjson

from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel
from features.sensors.simulator import SimulatorConfig, simulate
from features.sensors.window_math import sensor_window
from streaming.pipelines.sensors import reading_message
from streaming.processors.sensor_join import SensorJoinConfig, SensorJoinOperator
from streaming.processors.sensor_windows import SensorWindowConfig, SensorWindowOperator
from streaming.runtime.operator import PartitionOperator
from streaming.runtime.records import Emission, InputBatch
from training.sensors_baseline import features_final_at, training_rows

GRACE_MS = 5_000
MODEL = LogisticAlertModel("skew-1", intercept=-2.0, coefficients=(0.1, 0.2, 0.3, 0.4, 0.5))
TOPICS = {"SX": "SX", "SY": "SY", "FA": "FA", "FI": "FI", "FD": "FD"}


class LiveJoin:
    """The two operators chained as the processors run them on a live stream."""

    def __init__(self) -> None:
        self.windows = SensorWindowOperator(SensorWindowConfig(
            sensor_window(GRACE_MS), DEFAULT_EDGES, {"FA": "FA", "FI": "FI", "FD": "FD"},
            idle_timeout_ms=10_000), 0)
        self.join = SensorJoinOperator(SensorJoinConfig(TOPICS, "predictions", MODEL, 0.5), 0)
        self.offsets: dict[str, int] = {}
        self.final: dict[tuple[str, int], list[int]] = {}  # (client, reading time) -> vector
        # readings whose features one emission carried with a later reading's of their client
        self.bursts: set[tuple[str, int]] = set()

    def _batch(self, topic: str, keys: list[str], values: list[bytes]) -> InputBatch:
        first = self.offsets.get(topic, 0)
        self.offsets[topic] = first + len(values)
        return InputBatch(topic, 0, np.arange(first, first + len(values), dtype=np.int64),
                          [k.encode() for k in keys], list(values))

    def _to_join(self, emission: Emission) -> None:
        assert not emission.dead_letters
        by_topic: dict[str, tuple[list[str], list[bytes]]] = {}
        for out in emission.batches:
            keys, values = by_topic.setdefault(out.topic, ([], []))
            keys += out.keys
            values += out.values
        for record in emission.records:
            keys, values = by_topic.setdefault(record.topic, ([], []))
            keys.append(str(record.key))
            values.append(record.value)
        readings: dict[str, set[int]] = {}
        for value in by_topic.get("FA", ([], []))[1]:
            row = orjson.loads(value)
            readings.setdefault(row["client"], set()).add(row["timestamp_ms"])
        for client, times in readings.items():
            self.bursts.update((client, t) for t in sorted(times)[:-1])
        # one poll carries the emission's FA, FI and FD (produced together)
        work: list[tuple[PartitionOperator, InputBatch]] = [
            (self.join, self._batch(topic, keys, values))
            for topic, (keys, values) in by_topic.items()]
        self._collect(SensorJoinOperator.process_many(work, 0))

    def _collect(self, emission: Emission) -> None:
        assert not emission.dead_letters
        for out in emission.batches:
            for value in out.values:
                row = orjson.loads(value)
                if row["trigger"] in ("FA", "FI", "FD"):  # a prediction for an SZ reading
                    self.final[(row["client"], row["timestamp_ms"])] = row["vector"]

    def event(self, sensor: str, client: str, ts: int, value: float) -> None:
        message = reading_message(client, ts, value, sensor)
        if sensor == "SZ":
            self._to_join(self.windows.process(self._batch("SZ", [client], [message]), 0))
        else:
            self._collect(self.join.process(self._batch(sensor, [client], [message]), 0))


def test_the_joins_vector_for_every_reading_is_the_training_row() -> None:
    events = simulate(SimulatorConfig(clients=6, duration_ms=40 * 60_000, seed=11,
                                      incidents_per_hour=2.0))
    live = LiveJoin()
    # live order: by event time; at a tie SX and SY first (a training row takes them as of
    # the emitting reading's time, inclusive)
    rank = {"SX": 0, "SY": 0, "SZ": 1}
    rows = sorted(zip(events["timestamp_ms"].to_pylist(), events["sensor"].to_pylist(),
                      events["client"].to_pylist(), events["value"].to_pylist(), strict=True),
                  key=lambda r: (r[0], rank[r[1]]))
    for ts, sensor, client, value in rows:
        live.event(sensor, client, ts, value)

    trained = training_rows(events, grace_ms=GRACE_MS)
    expected = {(str(c), int(t)): v.tolist() for c, t, v in
                zip(trained.clients, trained.timestamps_ms, trained.vectors, strict=True)}
    # the last readings' features wait for an idle close; every other reading was served
    served = {k: v for k, v in live.final.items() if k in expected}
    assert len(served) > 0.97 * len(expected)
    assert len(served) == len(live.final)
    wrong = {k: (v, expected[k]) for k, v in served.items() if v != expected[k]}
    assert not wrong, f"{len(wrong)} of {len(served)} differ: {list(wrong.items())[:3]}"
    # the case the join handles on purpose: one emission carrying several readings of a client
    # (FA, FI, FD of each joined as of the reading, not topic by topic)
    assert live.bursts & set(served)

    naive = training_rows(events, grace_ms=0)  # SX and SY as of the reading's own time
    as_of_t = {(str(c), int(t)): v.tolist() for c, t, v in
               zip(naive.clients, naive.timestamps_ms, naive.vectors, strict=True)}
    differ = sum(v != as_of_t.get(k) for k, v in served.items())
    assert differ > 0.05 * len(served), "the test would not see the skew it guards against"


def test_readings_features_are_final_at_the_clients_first_reading_after_the_grace() -> None:
    codes = np.array([0, 0, 0, 0, 1, 1])
    ts = np.array([1_000, 3_000, 6_000, 6_500, 1_000, 2_000])
    # client 0: 1 s + 5 s -> 6 s; 3 s -> 8 s: none, so 8 s (idle); client 1 has none either
    assert features_final_at(codes, ts, 5_000).tolist() == [6_000, 8_000, 11_000, 11_500,
                                                          6_000, 7_000]
    assert features_final_at(codes, ts, 0).tolist() == ts.tolist()
    assert features_final_at(codes[:0], ts[:0], 5_000).tolist() == []
