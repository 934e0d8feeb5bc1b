"""The sensors backfill's per-client vectors (`batch.sensors_backfill.client_vectors`): the
archive's rows in any order give the rows of the rule over each topic's log order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from batch.sensors_backfill import SENSOR_READINGS_SCHEMA, VECTORS_OUTPUT_SCHEMA, client_vectors
from features.sensors.binning import DEFAULT_EDGES
from features.sensors.vectors import event_vectors

T0 = 1_767_225_600_000


def test_archived_rows_in_any_order_give_the_rule_over_log_order() -> None:
    # one client's readings in log order per topic (offsets), an SX late by 2 s + grace 1 s
    log = [("SX", 0, 1_000, 4.0), ("SY", 0, 1_000, 7.0), ("SZ", 0, 2_000, 50.0),
           ("SX", 1, 5_000, 5.0), ("SX", 2, 2_000, 9.0), ("SZ", 1, 6_000, 70.0)]
    rows = [{"client": "a", "partition": 3, "offset": o, "timestamp_ms": T0 + t, "value": v,
             "sensor": s} for s, o, t, v in log]
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    got = client_vectors(pa.Table.from_pylist(shuffled, SENSOR_READINGS_SCHEMA), 1_000,
                         DEFAULT_EDGES)
    assert got.schema == VECTORS_OUTPUT_SCHEMA
    in_order = pa.table({"sensor": [r[0] for r in log], "client": ["a"] * len(log),
                         "timestamp_ms": [T0 + r[2] for r in log], "value": [r[3] for r in log]})
    want = event_vectors(in_order, DEFAULT_EDGES, 1_000)
    assert got["trigger"].to_pylist() == want.triggers.tolist() == ["SZ", "SX", "SZ"]
    assert got["SX"].to_pylist() == [4, 5, 5]  # the SX of 2 s came 3 s behind: late
    assert got["timestamp_ms"].to_pylist() == [T0 + 2_000, T0 + 5_000, T0 + 6_000]
    assert got["date"].to_pylist() == ["2026-01-01"] * 3
