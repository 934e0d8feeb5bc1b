"""The baseline's training set is point-in-time correct and the fit beats never alerting."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel, predict
from training.sensors_baseline import (
    save_model,
    train_on_simulation,
    training_rows,
    training_set,
)


def test_every_sx_sy_and_sz_event_gets_its_vector_as_of_its_own_time() -> None:
    events = pa.table({
        "sensor": ["SX", "SY", "SZ", "SX", "SZ", "SX", "SZ", "SZ"],
        "client": ["a", "a", "a", "a", "a", "a", "a", "b"],
        "timestamp_ms": [1_000, 1_000, 2_000, 3_000, 3_000, 8_000, 9_000, 2_000],
        "value": [4.0, 7.0, 50.0, 5.0, 60.0, 6.0, 55.0, 1.0],
        "incident": [False, False, False, False, True, False, False, False],
    })
    rows = training_rows(events, grace_ms=1_000)
    # a's SX and SY of 1 s have no SZ at or before them yet; b has no SX, SY: no rows
    assert list(zip(rows.clients, rows.timestamps_ms.tolist(), rows.triggers, strict=True)) == [
        ("a", 2_000, "SZ"), ("a", 3_000, "SX"), ("a", 3_000, "SZ"), ("a", 8_000, "SX"),
        ("a", 9_000, "SZ")]
    # SX and SY as of each event's time (an SX at the reading's own time counts)
    assert rows.vectors[:, :2].tolist() == [[4, 7], [5, 7], [5, 7], [6, 7], [6, 7]]
    # FA of the window ending at the latest reading at or before the event: 50, then (50 + 60)
    # / 2 for the events of 3 s and 8 s, then (50 + 60 + 55) / 3
    fa = DEFAULT_EDGES.bin("FA", np.array([50.0, 55.0, 55.0, 55.0, 55.0]))
    assert rows.vectors[:, 2].tolist() == fa.tolist()
    assert rows.labels.tolist() == [0, 0, 1, 0, 0]  # each event's own incident flag
    vectors, labels = training_set(events, grace_ms=1_000)
    assert vectors.tolist() == rows.vectors.tolist() and labels.tolist() == [0, 0, 1, 0, 0]


def test_a_reading_late_beyond_grace_in_its_topic_counts_nowhere() -> None:
    events = pa.table({  # row order is arrival order: the SX of 1 s comes after the one of 3 s
        "sensor": ["SY", "SZ", "SX", "SX", "SZ"], "client": ["a"] * 5,
        "timestamp_ms": [500, 500, 3_000, 1_000, 4_000],
        "value": [2.0, 10.0, 5.0, 9.0, 30.0], "incident": [False] * 5})
    late = training_rows(events, grace_ms=2_000)  # 1 s + 2 s <= 3 s: late
    assert [(t, g) for t, g in zip(late.timestamps_ms.tolist(), late.triggers, strict=True)] == [
        (3_000, "SX"), (4_000, "SZ")]
    in_grace = training_rows(events, grace_ms=2_001)  # in time: an event, and a vector
    assert [(t, g, v[0]) for t, g, v in zip(in_grace.timestamps_ms.tolist(), in_grace.triggers,
                                            in_grace.vectors.tolist(), strict=True)] == [
        (1_000, "SX", 9), (3_000, "SX", 5), (4_000, "SZ", 5)]


def test_a_reading_the_max_lateness_behind_its_partition_counts_nowhere() -> None:
    # d's readings come 10 s behind a's, which came first: on a single partition with a max
    # lateness of 10 s they are late; on the stream's two partitions, a (partition 0) and d
    # (partition 1, `features.partitioning.partition_for`) do not share a stream time
    events = pa.table({
        "sensor": ["SX", "SY", "SZ"] * 2, "client": ["a"] * 3 + ["d"] * 3,
        "timestamp_ms": [20_000] * 3 + [10_000] * 3, "value": [1.0, 2.0, 30.0] * 2,
        "incident": [False] * 6})
    one = training_rows(events, grace_ms=1_000, max_lateness_ms=10_000, partitions=1)
    assert set(one.clients) == {"a"}
    two = training_rows(events, grace_ms=1_000, max_lateness_ms=10_000, partitions=2)
    assert sorted(set(two.clients)) == ["a", "d"]
    more = training_rows(events, grace_ms=1_000, max_lateness_ms=10_001, partitions=1)
    assert sorted(set(more.clients)) == ["a", "d"]  # 10 s + 10.001 s > 20 s: on time


def test_the_fitted_baseline_beats_never_alerting_and_round_trips(tmp_path) -> None:
    model, report = train_on_simulation(clients=40, minutes=120, seed=3)
    assert report.auc > 0.8
    assert report.accuracy_at_half > report.majority_accuracy
    path = tmp_path / "model.json"
    save_model(path, model, report)
    again = LogisticAlertModel.load(path)
    assert again == model and again.version.startswith("logistic-config-v1-")
    assert 0.0 <= predict(again, [1, 2, 3, 4, 5]) <= 1.0
