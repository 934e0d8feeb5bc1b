"""Training settings (env prefix `BRAID_TRAIN_`, or `.env`): split, XGBoost, promotion rule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    """What a training run does, apart from its data (time range, pairs, source)."""

    model_config = SettingsConfigDict(env_prefix="BRAID_TRAIN_", env_file=".env", extra="ignore")

    #: Markets label: the close `horizon` candles ahead is higher than this candle's close.
    horizon: int = Field(default=1, ge=1)
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    #: Sensors: time left out between train, validation and test (the label is the reading's own
    #: incident flag; its window features look this far back).
    sensors_gap_ms: int = Field(default=60_000, ge=0)
    seed: int = 0
    nthread: int = Field(default=2, ge=1)
    n_estimators: int = Field(default=400, ge=1)
    max_depth: int = Field(default=4, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    early_stopping_rounds: int = Field(default=30, ge=1)
    #: The metric a new version must beat the champion on (see training.evaluation.METRICS).
    promotion_metric: Literal["roc_auc", "log_loss", "accuracy", "mae", "precision", "recall",
                              "directional_accuracy"] = "roc_auc"
    #: By how much (in the metric's units) it must beat it.
    promotion_margin: float = Field(default=0.0, ge=0)
