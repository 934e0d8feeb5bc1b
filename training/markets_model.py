"""The markets model: XGBoost on `markets_direction_v1`, predicting the next candle's direction."""

from __future__ import annotations

from datetime import datetime

from feast import FeatureStore

from training.results import TrainResult


def train_markets(
    start: str | datetime,
    end: str | datetime,
    pairs: list[str],
    *,
    horizon: int | None = None,
    store: FeatureStore | None = None,
    profile: str = "local",
    tracking_uri: str | None = None,
    promotion_metric: str | None = None,
    promotion_margin: float | None = None,
    seed: int | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and promote a markets model (None: the settings' value)."""
    raise NotImplementedError("training.markets_model.train_markets: being written (issue 12)")
