"""The Lambda test for sensors: the same simulated readings through the speed layer (window and
join processors on a real broker) and through the archive (GCS emulator) + Spark backfill give
the same features, value for value, with the same late readings dropped, and the same readings
stamped too far ahead of their Kafka timestamp (the event-time skew rule,
`features.event_time`), and the same readings the max lateness (2 h) behind their partition's
stream time (a client whose first readings come three hours behind the others of its
partition); and the same vector for every event: the join's final prediction, the backfill's
`sensor_vectors` row and the training row (`training.sensors_baseline`) agree, with no event
missing or extra in any of the three."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from batch.sensors_backfill import run_backfill, sibling_table
from features.event_time import DEFAULT_MAX_EVENT_TIME_SKEW_MS, skew_reason
from features.sensors.binning import BinEdges, learn_edges
from features.sensors.schemas import FEATURES
from features.sensors.simulator import SimulatorConfig, simulate
from features.sensors.window_math import DEFAULT_MAX_LATENESS_MS
from streaming.partitioning import partition_for
from streaming.pipelines.sensors import archive_processor, run_sensors_through_stream
from streaming.runtime.topic_reader import read_topic
from training.sensors_baseline import training_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GRACE_MS = 3_000


def test_stream_and_spark_backfill_agree_value_for_value(
    kafka_settings, gcs_emulator, unique_topic_prefix, tmp_path
) -> None:
    # arrival delays up to 8 s against a 3 s grace: some readings are late, in both engines
    events = simulate(SimulatorConfig(clients=10, duration_ms=40 * 60_000, disorder_ms=8_000,
                                      seed=21))
    # three SZ readings stamped two hours after now (their Kafka timestamp), mid-stream: invalid
    # in both engines, and they never move a client's stream time
    ahead = int(time.time() * 1000) + 2 * 3_600_000
    clients = events["client"].to_pylist()
    future = pa.table({"sensor": ["SZ"] * 3, "client": [clients[0], clients[1], clients[0]],
                       "timestamp_ms": [ahead, ahead + 1, ahead + 2], "value": [1.0, 2.0, 3.0],
                       "incident": [False] * 3}).cast(events.schema)
    middle = events.num_rows // 2
    # a client of the first client's partition whose SX, SY and SZ come three hours behind the
    # partition's stream time, mid-stream: on time for its own stream time (it has none), late
    # by the partition's (the max lateness: 2 h), in the stream, the backfill and the training
    straggler = next(name for name in (f"straggler-{i}" for i in range(100))
                     if partition_for(name, 4) == partition_for(clients[0], 4))
    behind = int(pc.min(events["timestamp_ms"]).as_py()) - 3 * 3_600_000
    stragglers = pa.table({"sensor": ["SX", "SY", "SZ", "SZ"], "client": [straggler] * 4,
                           "timestamp_ms": [behind, behind, behind, behind + 1_000],
                           "value": [1.0, 2.0, 3.0, 4.0],
                           "incident": [False] * 4}).cast(events.schema)
    events = pa.concat_tables([events.slice(0, middle), future, stragglers,
                               events.slice(middle)])
    stream = run_sensors_through_stream(events, kafka_settings, topic_prefix=unique_topic_prefix,
                                        grace_ms=GRACE_MS, partitions=4)
    letters = [orjson.loads(v) for _, _, _, v in read_topic(kafka_settings,
                                                            stream.topics.dead_letter)
               if v is not None]
    late = [v for v in letters if v["reason"].startswith("late:")
            and v["topic"] == stream.topics.SZ]
    assert late, "the test needs late readings to show both engines drop the same ones"
    skewed = [v for v in letters if skew_reason(DEFAULT_MAX_EVENT_TIME_SKEW_MS) in v["reason"]]
    assert len(skewed) == 3
    beyond = sorted(v["topic"][len(unique_topic_prefix):] for v in letters
                    if f"{DEFAULT_MAX_LATENESS_MS} ms (max lateness)" in v["reason"])
    assert beyond == ["SX", "SY", "SZ", "SZ"]

    root = f"gs://{gcs_emulator.bucket}/{unique_topic_prefix}archive"
    archive_processor(kafka_settings, root, topics=stream.topics, max_rows=500, max_age_s=0.3,
                      group=f"{unique_topic_prefix}archive").run(max_idle_s=3,
                                                                  install_signals=False)
    table_uri = str(tmp_path / "offline" / "sensor_features")
    run_backfill(root, table_uri, grace_ms=GRACE_MS, topic_prefix=unique_topic_prefix)
    batch = DeltaTable(table_uri).to_pyarrow_table().sort_by(
        [("client", "ascending"), ("timestamp_ms", "ascending")])

    online = stream.features
    sz = int(pc.sum(pc.equal(events["sensor"], "SZ")).as_py())
    assert online.num_rows == sz - len(late) - len(skewed)
    assert not set(online["timestamp_ms"].to_pylist()) & {ahead, ahead + 1, ahead + 2}
    assert batch.num_rows == online.num_rows
    for column in ("client", "timestamp_ms", "count", "edges_version",
                   *(f"{f}_bin" for f in FEATURES)):
        assert batch[column].to_pylist() == online[column].to_pylist(), column
    for name in FEATURES:
        np.testing.assert_allclose(batch[name].to_numpy(), online[name].to_numpy(), rtol=0,
                                   atol=1e-9)
        assert np.array_equal(batch[name].to_numpy(), online[name].to_numpy())  # bit for bit

    # every event's vector: the join's final prediction, the backfill's row, the training row
    served = {key: p["vector"] for key, p in stream.final_predictions().items()}
    vectors = DeltaTable(sibling_table(table_uri, "sensor_vectors")).to_pyarrow_table()
    backfilled = {(c, t, g): [sx, sy, fa, fi, fd] for c, t, g, sx, sy, fa, fi, fd in zip(
        *(vectors[c].to_pylist() for c in ("client", "timestamp_ms", "trigger", "SX", "SY",
                                           "FA_bin", "FI_bin", "FD_bin")), strict=True)}
    accepted = events.filter(pc.invert(pc.is_in(events["timestamp_ms"],
                                                pa.array([ahead, ahead + 1, ahead + 2]))))
    rows = training_rows(accepted, grace_ms=GRACE_MS, partitions=4)
    trained = {(c, t, g): v.tolist() for c, t, g, v in zip(
        rows.clients, rows.timestamps_ms.tolist(), rows.triggers, rows.vectors, strict=True)}
    assert len(trained) > 0.9 * events.num_rows
    assert {g for _, _, g in trained} == {"SX", "SY", "SZ"}
    assert served == backfilled == trained

    # idempotent: a second run replaces its dates instead of appending; it also learns edges
    edges_path = tmp_path / "edges.json"
    run_backfill(root, table_uri, grace_ms=GRACE_MS, topic_prefix=unique_topic_prefix,
                 learn_edges_to=str(edges_path), learned_version="learned-test")
    assert DeltaTable(table_uri).to_pyarrow_table().num_rows == online.num_rows
    learned = BinEdges.load(edges_path)
    expected = learn_edges("learned-test", *(online[f].to_numpy() for f in FEATURES))
    assert learned.version == "learned-test"
    for name in FEATURES:
        assert learned.ranges[name].low == pytest.approx(expected.ranges[name].low, rel=1e-9)
        assert learned.ranges[name].high == pytest.approx(expected.ranges[name].high, rel=1e-9)
