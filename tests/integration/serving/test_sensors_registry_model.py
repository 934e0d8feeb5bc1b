"""The sensors join with its model from the MLflow registry (real XGBoost, SQLite tracking),
on a real broker: its alerts are xgboost's own probabilities of the joined vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.model_contract import FEATURE_SERVICES, MODEL_NAMES
from features.sensors.simulator import SimulatorConfig, simulate
from serving.models import ModelRefused, defined_service_columns, registry_alert_model
from streaming.pipelines.sensors import run_sensors_through_stream
from streaming.settings import KafkaSettings
from tests.integration.serving.model_registry import register, sqlite_registry

pytestmark = pytest.mark.integration

NAME = MODEL_NAMES["sensors"]


@pytest.mark.slow
def test_join_predicts_with_the_registry_champion(
        tmp_path: Path, kafka_settings: KafkaSettings, unique_topic_prefix: str) -> None:
    sqlite_registry(tmp_path)
    columns = defined_service_columns(FEATURE_SERVICES["sensors"])
    assert columns == ["sensor_sx__SX", "sensor_sy__SY", "sensor_fa__FA_bin",
                       "sensor_fi__FI_bin", "sensor_fd__FD_bin"]
    registered = register(NAME, columns, seed=4, integer=True)
    model = registry_alert_model(f"models:/{NAME}@champion", poll_s=60)
    try:
        events = simulate(SimulatorConfig(clients=4, duration_ms=12 * 60_000, seed=2))
        result = run_sensors_through_stream(events, kafka_settings,
                                            topic_prefix=unique_topic_prefix, grace_ms=2_000,
                                            partitions=2, model=model)
    finally:
        model.watcher.stop()
    predictions = result.predictions
    assert predictions.num_rows > 50
    vectors = np.array(predictions["vector"].to_pylist(), dtype=np.float64)
    expected = registered.classifier.predict_proba(pd.DataFrame(vectors, columns=columns))[:, 1]
    assert predictions["probability"].to_numpy() == pytest.approx(expected, rel=1e-6)
    assert set(predictions["model_version"].to_pylist()) == {f"{NAME}/{registered.version}"}
    alerts = predictions["alert"].to_numpy()
    assert (alerts == (expected >= 0.5)).all()


def test_a_sensors_model_over_other_columns_is_refused_with_both_lists(tmp_path: Path) -> None:
    sqlite_registry(tmp_path)
    columns = defined_service_columns(FEATURE_SERVICES["sensors"])
    register(NAME, columns[::-1], seed=4, integer=True)
    with pytest.raises(ModelRefused) as refused:
        registry_alert_model(f"models:/{NAME}@champion", poll_s=60)
    assert str(columns) in str(refused.value) and str(columns[::-1]) in str(refused.value)
