"""The sensors backfill's per-partition features and vectors
(`batch.sensors_backfill.partition_features`, `partition_vectors`): the archive's rows in any
order give the rule over each topic's log order, a client's lateness judged by its own stream
time and by its partition's."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch.sensors_backfill import (
    READINGS_SCHEMA,
    SENSOR_READINGS_SCHEMA,
    VECTORS_OUTPUT_SCHEMA,
    partition_features,
    partition_vectors,
)
from features.sensors.binning import DEFAULT_EDGES
from features.sensors.vectors import event_vectors
from features.sensors.window_math import sensor_window

T0 = 1_767_225_600_000


def test_archived_rows_in_any_order_give_the_rule_over_log_order() -> None:
    # one client's readings in log order per topic (offsets), an SX late by 2 s + grace 1 s
    log = [("SX", 0, 1_000, 4.0), ("SY", 0, 1_000, 7.0), ("SZ", 0, 2_000, 50.0),
           ("SX", 1, 5_000, 5.0), ("SX", 2, 2_000, 9.0), ("SZ", 1, 6_000, 70.0)]
    rows = [{"client": "a", "partition": 3, "offset": o, "timestamp_ms": T0 + t, "value": v,
             "sensor": s} for s, o, t, v in log]
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    got = partition_vectors(pa.Table.from_pylist(shuffled, SENSOR_READINGS_SCHEMA), 1_000,
                            DEFAULT_EDGES)
    assert got.schema == VECTORS_OUTPUT_SCHEMA
    in_order = pa.table({"sensor": [r[0] for r in log], "client": ["a"] * len(log),
                         "timestamp_ms": [T0 + r[2] for r in log], "value": [r[3] for r in log]})
    want = event_vectors(in_order, DEFAULT_EDGES, 1_000)
    assert got["trigger"].to_pylist() == want.triggers.tolist() == ["SZ", "SX", "SZ"]
    assert got["SX"].to_pylist() == [4, 5, 5]  # the SX of 2 s came 3 s behind: late
    assert got["timestamp_ms"].to_pylist() == [T0 + 2_000, T0 + 5_000, T0 + 6_000]
    assert got["date"].to_pylist() == ["2026-01-01"] * 3


def test_a_reading_the_max_lateness_behind_its_partition_is_late_for_every_client() -> None:
    # b's SX and SZ at 1 s reach their partitions after a's readings of 10 s: on time for b's
    # own stream time (b has none yet), but 9 s behind the partition's, with a max lateness of
    # 8 s: late, in the features and in the vectors; c, on another partition, is not judged by
    # a's readings
    log = [("SX", "a", 0, 0, 1_000, 1.0), ("SY", "a", 0, 0, 1_000, 2.0),
           ("SZ", "a", 0, 0, 10_000, 40.0), ("SX", "a", 0, 1, 10_000, 3.0),
           ("SX", "b", 0, 2, 1_000, 4.0), ("SY", "b", 0, 1, 1_000, 5.0),
           ("SZ", "b", 0, 1, 1_000, 60.0), ("SZ", "b", 0, 2, 9_500, 70.0),
           ("SX", "c", 1, 0, 1_000, 6.0), ("SY", "c", 1, 0, 1_000, 7.0),
           ("SZ", "c", 1, 0, 1_000, 80.0)]
    rows = [{"client": c, "partition": p, "offset": o, "timestamp_ms": T0 + t, "value": v,
             "sensor": s} for s, c, p, o, t, v in log]
    readings = pa.Table.from_pylist(rows, SENSOR_READINGS_SCHEMA)
    vectors = partition_vectors(readings, 5_000, DEFAULT_EDGES, max_lateness_ms=8_000)
    events = set(zip(*(vectors[c].to_pylist() for c in ("client", "timestamp_ms", "trigger")),
                     strict=True))
    # b's SX at 1 s is late (its SY at 1 s is on time: SY's partition had seen only 1 s); b's
    # SZ at 1 s is late, its SZ at 9.5 s on time; so b's events have no SX: no vector at all
    assert events == {("a", T0 + 10_000, "SZ"), ("a", T0 + 10_000, "SX"),
                      ("c", T0 + 1_000, "SX"), ("c", T0 + 1_000, "SY"),
                      ("c", T0 + 1_000, "SZ")}
    without_bound = partition_vectors(readings, 5_000, DEFAULT_EDGES, max_lateness_ms=10_000)
    assert ("b", T0 + 9_500, "SZ") in set(zip(
        *(without_bound[c].to_pylist() for c in ("client", "timestamp_ms", "trigger")),
        strict=True))

    sz = readings.filter(pc.equal(readings["sensor"], "SZ")).select(
        READINGS_SCHEMA.names).cast(READINGS_SCHEMA)
    features = partition_features(sz, sensor_window(5_000, 8_000), DEFAULT_EDGES)
    assert list(zip(features["client"].to_pylist(), features["timestamp_ms"].to_pylist(),
                    features["count"].to_pylist(), strict=True)) == [
        ("a", T0 + 10_000, 1), ("b", T0 + 9_500, 1), ("c", T0 + 1_000, 1)]
