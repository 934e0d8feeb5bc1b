"""The sensors alert model: XGBoost on the `sensors_alert_v1` vector (simulator or SKAB)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from training.results import TrainResult

SensorsSource = Literal["simulator", "skab"]


def train_sensors(
    source: SensorsSource = "simulator",
    *,
    clients: int = 300,
    minutes: int = 240,
    skab_dir: Path | None = None,
    tracking_uri: str | None = None,
    promotion_metric: str | None = None,
    promotion_margin: float | None = None,
    seed: int | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and promote a sensors model (None: the settings' value)."""
    raise NotImplementedError("training.sensors_model.train_sensors: being written (issue 12)")
