"""The baseline's training set is point-in-time correct and the fit beats never alerting."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel, predict
from training.sensors_baseline import save_model, train_on_simulation, training_set


def test_sx_and_sy_are_taken_as_of_the_moment_each_readings_features_are_final() -> None:
    events = pa.table({
        "sensor": ["SX", "SY", "SZ", "SX", "SZ", "SX", "SZ", "SZ"],
        "client": ["a", "a", "a", "a", "a", "a", "a", "b"],
        "timestamp_ms": [1_000, 1_000, 2_000, 3_000, 3_000, 8_000, 9_000, 2_000],
        "value": [4.0, 7.0, 50.0, 5.0, 60.0, 6.0, 55.0, 1.0],
        "incident": [False, False, False, False, True, False, False, False],
    })
    # grace 1 s: the reading of 2 s is final when a's stream time reaches 3 s (the reading of
    # 3 s, whose SX the join holds by then: <= is included); the reading of 3 s when it reaches
    # 4 s, at the reading of 9 s (SX of 8 s); the last reading on idleness, at 10 s.
    # b has no SX/SY: left out.
    vectors, labels = training_set(events, grace_ms=1_000)
    assert vectors[:, :2].tolist() == [[5, 7], [6, 7], [6, 7]]
    assert labels.tolist() == [0, 1, 0]
    fa = DEFAULT_EDGES.bin("FA", np.array([50.0, 55.0, 55.0]))
    assert vectors[:, 2].tolist() == fa.tolist()
    # no grace: as of each reading's own event time
    vectors, _ = training_set(events, grace_ms=0)
    assert vectors[:, :2].tolist() == [[4, 7], [5, 7], [6, 7]]


def test_the_fitted_baseline_beats_never_alerting_and_round_trips(tmp_path) -> None:
    model, report = train_on_simulation(clients=40, minutes=120, seed=3)
    assert report.auc > 0.8
    assert report.accuracy_at_half > report.majority_accuracy
    path = tmp_path / "model.json"
    save_model(path, model, report)
    again = LogisticAlertModel.load(path)
    assert again == model and again.version.startswith("logistic-config-v1-")
    assert 0.0 <= predict(again, [1, 2, 3, 4, 5]) <= 1.0
