"""What a trained model promises its users: registry names, aliases and its input columns.

Training (`training/`), the stream predictors (`streaming/`), the HTTP API and the Prefect flows
all meet here, so none of them guesses another's names:

- a pipeline's model is registered in MLflow under `MODEL_NAMES[pipeline]`;
- the model serving live traffic carries the registry alias `CHAMPION`; a trained model that did
  not beat it carries `CHALLENGER`;
- its input is the pipeline's feature service, one float64 column per feature, named as Feast
  names them with `full_feature_names=True` (`<view>__<feature>`), in the service's order. The
  model's MLflow signature lists exactly these columns: a model whose signature differs is
  refused at load.
- the markets model is an XGBoost binary classifier (label: the next candle closes higher than
  this one); the sensors model an XGBoost binary classifier of an incident. Both are logged with
  `mlflow.xgboost`; users call `predict_proba(...)[:, 1]` on the native model.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

Pipeline = Literal["markets", "sensors"]

MODEL_NAMES: dict[str, str] = {
    "markets": "braid-markets-direction",
    "sensors": "braid-sensors-alert",
}
FEATURE_SERVICES: dict[str, str] = {
    "markets": "markets_direction_v1",
    "sensors": "sensors_alert_v1",
}
CHAMPION = "champion"
CHALLENGER = "challenger"


class MlflowSettings(BaseSettings):
    """Where MLflow lives (prefix `BRAID_MLFLOW_`); `MLFLOW_TRACKING_URI` wins when set."""

    model_config = SettingsConfigDict(env_prefix="BRAID_MLFLOW_", env_file=".env",
                                      extra="ignore")

    #: The local stack's MLflow server (`braid up`); any tracking URI works.
    tracking_uri: str = "http://127.0.0.1:15000"
    experiment_markets: str = "braid-markets"
    experiment_sensors: str = "braid-sensors"

    def resolved_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or self.tracking_uri


def model_uri(pipeline: Pipeline, alias: str = CHAMPION) -> str:
    """`models:/<name>@<alias>` of a pipeline's model."""
    return f"models:/{MODEL_NAMES[pipeline]}@{alias}"


def feature_columns(feature_service_features: list[tuple[str, list[str]]]) -> list[str]:
    """Model input columns from a service's (view, features) projections, in order."""
    return [f"{view}__{name}" for view, names in feature_service_features for name in names]
