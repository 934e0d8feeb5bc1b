"""The sensors model is trained on the vectors the stream serves, at simulator scale: simulated
readings (out of order, some beyond grace) go through the real window and join operators, once
as a live stream (every reading handed over as it arrives, each processor polling what is
there) and once as a backlog (every topic published before either processor starts), and for
every event the join's final prediction holds the training row
`training.sensors_baseline.training_rows` builds for it, field for field: SZ-, SX- and
SY-triggered alike, none missing, none extra. (`test_sensors_exact_join.py` proves the same
over generated interleavings, poll groupings and kills.)"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel
from features.sensors.simulator import SimulatorConfig, simulate
from tests.support.sensor_streams import JOIN_INPUTS, SensorStreams
from training.sensors_baseline import training_rows

GRACE_MS = 5_000
MODEL = LogisticAlertModel("skew-1", intercept=-2.0, coefficients=(0.1, 0.2, 0.3, 0.4, 0.5))


def expected(events: pa.Table) -> dict[str, list[int]]:
    rows = training_rows(events, DEFAULT_EDGES, GRACE_MS, partitions=1)
    return {f"{c}|{t}|{g}": v.tolist() for c, t, g, v in zip(
        rows.clients, rows.timestamps_ms, rows.triggers, rows.vectors, strict=True)}


def served(streams: SensorStreams) -> dict[str, list[int]]:
    return {key: p["vector"] for key, p in streams.final_predictions().items()}  # type: ignore[misc]


def live(events: pa.Table, seed: int) -> SensorStreams:
    """Readings handed over one by one in arrival order; after each, each processor polls
    what is waiting with probability 1/2 (so the join sees SX/SY and features in every order)."""
    rng = random.Random(seed)
    streams = SensorStreams(MODEL, GRACE_MS)
    for sensor, client, ts, value in zip(*(events[c].to_pylist() for c in (
            "sensor", "client", "timestamp_ms", "value")), strict=True):
        streams.publish(sensor, client, ts, value)
        if rng.random() < 0.5:
            streams.poll("windows", {"SZ": 10**6})
        if rng.random() < 0.5:
            streams.poll("join", dict.fromkeys(JOIN_INPUTS, rng.choice((1, 10**6))))
    streams.drain()
    return streams


def test_the_joins_final_vector_for_every_event_is_its_training_row() -> None:
    events = simulate(SimulatorConfig(clients=6, duration_ms=40 * 60_000, seed=11,
                                      incidents_per_hour=2.0, disorder_ms=8_000))
    want = expected(events)
    triggers = [key.rsplit("|", 1)[1] for key in want]
    # ~40 SX, ~80 SY and ~480 SZ readings per client (every 60, 30 and 5 s on average)
    assert triggers.count("SX") > 6 * 30 and triggers.count("SY") > 6 * 60
    assert triggers.count("SZ") > 6 * 400

    streams = live(events, seed=1)
    got = served(streams)
    assert got.keys() == want.keys()
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not wrong, f"{len(wrong)} of {len(want)} differ: {list(wrong.items())[:3]}"
    # disorder beyond grace: some SZ readings are dead-lettered (SX and SY, 30 s or more
    # apart, are never 5 s behind their own stream time here; the property test has those)
    assert {d.topic for d in streams.dead_letters} == {"SZ"}
    # and within grace: some answers were corrected (the same key again)
    assert len(streams.predictions) > len(got)

    backlog = SensorStreams(MODEL, GRACE_MS)
    backlog.publish_table(events)
    backlog.drain()
    assert backlog.final_prediction_bytes() == streams.final_prediction_bytes()


def test_events_before_a_clients_first_sx_sy_and_sz_get_no_row_and_no_prediction() -> None:
    events = simulate(SimulatorConfig(clients=3, duration_ms=10 * 60_000, seed=4))
    want = expected(events)
    for client in ("c000000", "c000001", "c000002"):
        mine = events.filter(pc.equal(events["client"], client))
        firsts = [int(pc.min(mine.filter(pc.equal(mine["sensor"], s))["timestamp_ms"]).as_py())
                  for s in ("SX", "SY", "SZ")]
        times = np.array([int(k.split("|")[1]) for k in want if k.startswith(client + "|")])
        assert times.min() == max(firsts)  # the first event with all five fields
    streams = SensorStreams(MODEL, GRACE_MS)
    streams.publish_table(events)
    streams.drain(per_poll=7)
    assert served(streams) == want
