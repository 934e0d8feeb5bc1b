"""Serving configuration (prefix `BRAID_FEAST_`), from the environment or `.env`.

Feast resolves relative paths against the working directory, so a relative `offline_root` is
resolved here against the Braid checkout (the folder holding `feature_repo/`): `feast apply` run
from `feature_repo/` and a training script run from anywhere read the same tables.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FEATURE_REPO = PROJECT_ROOT / "feature_repo"


class FeastSettings(BaseSettings):
    """Where the offline tables live and which candle durations get feature views."""

    model_config = SettingsConfigDict(env_prefix="BRAID_FEAST_", env_file=".env", extra="ignore")

    # Root of the Delta tables the backfills write (`candles`, `indicators`, `sensor_features`):
    # a local folder (relative: to the Braid checkout) or gs://bucket/prefix (profile gcp).
    offline_root: str = "var/offline"
    # Candle durations that get `candles_<d>` and `indicators_<d>` feature views, JSON list.
    durations: list[str] = Field(default_factory=lambda: ["1m", "1h"])
    # The sensors backfill's output table, under offline_root.
    sensor_features_table: str = "sensor_features"
    # SX/SY readings table (latest category per client), under offline_root.
    sensor_readings_table: str = "sensor_readings"
    # An HMAC key of a service account that may read the bucket, for DuckDB's reads of a gs://
    # offline_root (serving/duckdb_delta.py); unused with the local emulator.
    gcs_hmac_key_id: str | None = None
    gcs_hmac_secret: str | None = None

    def table_uri(self, name: str) -> str:
        """Absolute location of table `name` under the offline root."""
        root = self.offline_root.rstrip("/")
        if "://" in root:
            return f"{root}/{name}"
        path = Path(root)
        if not path.is_absolute():
            path = PROJECT_ROOT / path
        return str(path / name)


class ModelServingSettings(BaseSettings):
    """Which registry alias the predictors and the API serve, and how often they look at it
    (prefix `BRAID_MODEL_`; the tracking URI is `MlflowSettings`)."""

    model_config = SettingsConfigDict(env_prefix="BRAID_MODEL_", env_file=".env", extra="ignore")

    # The alias served (`models:/<name>@<alias>`); a model moved to it is swapped in live.
    alias: str = "champion"
    # Seconds between two looks at the alias.
    poll_interval_s: float = Field(default=10.0, gt=0)


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
