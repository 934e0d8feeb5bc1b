"""The baseline's training set is point-in-time correct and the fit beats never alerting."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from features.sensors.binning import DEFAULT_EDGES
from features.sensors.model import LogisticAlertModel, predict
from training.sensors_baseline import save_model, train_on_simulation, training_set


def test_sx_and_sy_are_taken_as_of_each_sz_reading() -> None:
    events = pa.table({
        "sensor": ["SX", "SY", "SZ", "SX", "SZ", "SZ"],
        "client": ["a", "a", "a", "a", "a", "b"],
        "timestamp_ms": [1_000, 1_000, 2_000, 3_000, 3_000, 2_000],
        "value": [4.0, 7.0, 50.0, 5.0, 60.0, 1.0],
        "incident": [False, False, False, False, True, False],
    })
    vectors, labels = training_set(events)
    # b has no SX/SY: left out. a at 2 s sees SX=4; at 3 s the SX of 3 s (<= t) is 5
    assert vectors[:, :2].tolist() == [[4, 7], [5, 7]]
    assert labels.tolist() == [0, 1]
    fa = DEFAULT_EDGES.bin("FA", np.array([50.0, 55.0]))
    assert vectors[:, 2].tolist() == fa.tolist()


def test_the_fitted_baseline_beats_never_alerting_and_round_trips(tmp_path) -> None:
    model, report = train_on_simulation(clients=40, minutes=120, seed=3)
    assert report.auc > 0.8
    assert report.accuracy_at_half > report.majority_accuracy
    path = tmp_path / "model.json"
    save_model(path, model, report)
    again = LogisticAlertModel.load(path)
    assert again == model and again.version.startswith("logistic-config-v1-")
    assert 0.0 <= predict(again, [1, 2, 3, 4, 5]) <= 1.0
