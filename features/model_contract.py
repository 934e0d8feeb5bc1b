"""What a trained model promises its users: registry names, aliases and its input columns.

Training (`training/`), the stream predictors (`streaming/`), the HTTP API and the Prefect flows
all meet here, so none of them guesses another's names. It lives in `features/`, the layer every
other one may import: `serving/` (which loads and checks models) needs it and must not import
`training/` (which registers them, above `serving/`). Where MLflow runs is deployment
configuration, not part of the contract: `serving.settings.MlflowSettings`.

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

from typing import Literal

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



def model_uri(pipeline: Pipeline, alias: str = CHAMPION) -> str:
    """`models:/<name>@<alias>` of a pipeline's model."""
    return f"models:/{MODEL_NAMES[pipeline]}@{alias}"


def feature_columns(feature_service_features: list[tuple[str, list[str]]]) -> list[str]:
    """Model input columns from a service's (view, features) projections, in order."""
    return [f"{view}__{name}" for view, names in feature_service_features for name in names]
