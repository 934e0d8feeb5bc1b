"""Small real XGBoost models registered in a real MLflow registry (SQLite tracking in a tmp
folder), the way training registers them: `mlflow.xgboost.log_model` with a signature over the
feature service's columns, then a registry alias."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.xgboost
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.models import infer_signature


@dataclass
class Registered:
    version: str
    classifier: xgb.XGBClassifier  # the fitted model itself, for independent predictions


def sqlite_registry(folder: Path) -> str:
    """Point MLflow at a fresh SQLite tracking store with artifacts under `folder`."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = f"braid-tests-{folder.name}"
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=(folder / "artifacts").as_uri())
    mlflow.set_experiment(name)
    return uri


def register(name: str, columns: list[str], *, seed: int, alias: str | None = "champion",
             integer: bool = False) -> Registered:
    """Fit a small classifier on random data over `columns`, log and register it, set `alias`."""
    rng = np.random.default_rng(seed)
    n = 300
    x = (rng.integers(0, 10, (n, len(columns))) if integer
         else rng.normal(size=(n, len(columns)))).astype(np.float64)
    y = ((x[:, 0] + x[:, -1] + rng.normal(scale=0.5, size=n)) > (9 if integer else 0))
    frame = pd.DataFrame(x, columns=columns)
    classifier = xgb.XGBClassifier(n_estimators=8, max_depth=3, random_state=seed, n_jobs=1)
    classifier.fit(frame, y.astype(int))
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(
            classifier, name="model", registered_model_name=name,
            signature=infer_signature(frame, classifier.predict_proba(frame)[:, 1]),
            input_example=frame.head(2), model_format="ubj",
            pip_requirements=["xgboost"])  # inferring them runs the model in a subprocess
    version = str(info.registered_model_version)
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, version)
    return Registered(version, classifier)
