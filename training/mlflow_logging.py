"""What a run records in MLflow besides metrics: code version, data, model with signature."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import mlflow
import mlflow.xgboost
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, DataType, Schema

REPO = Path(__file__).resolve().parents[1]
#: MLflow stores a dataset digest of at most 36 characters: a sha256's first 32 hex digits.
DATASET_DIGEST_CHARS = 32


def git_tags() -> dict[str, str]:
    """`git_commit` (HEAD) and `git_dirty` (uncommitted changes in the tree) of this checkout."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return {"git_commit": commit, "mlflow.source.git.commit": commit,
            "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower()}


_COLUMN_TYPES: dict[str, DataType] = {
    "float64": DataType.double, "float32": DataType.float, "int64": DataType.long,
    "int32": DataType.integer, "bool": DataType.boolean, "object": DataType.string,
}


def frame_schema(frame: pd.DataFrame) -> Schema:
    """The frame's MLflow schema from its column types (every column required)."""
    unknown = {str(c): str(t) for c, t in frame.dtypes.items() if str(t) not in _COLUMN_TYPES}
    if unknown:
        raise TypeError(f"no MLflow type for columns {unknown}")
    return Schema([ColSpec(_COLUMN_TYPES[str(t)], str(c)) for c, t in frame.dtypes.items()])


class TrainingFrame(PandasDataset):
    """MLflow's pandas dataset, its schema taken from the column types: MLflow's own inference
    walks every value (about 20 s per 200k rows of 30 columns) and warns about integer columns
    that could hold missing values, which these never do."""

    def __init__(self, frame: pd.DataFrame, *, source: DatasetSource, targets: str,
                 name: str, digest: str | None = None) -> None:
        super().__init__(frame, source=source, targets=targets, name=name, digest=digest)
        self._schema = frame_schema(frame)

    @property
    def schema(self) -> Schema:
        return self._schema


def log_training_data(frame: pd.DataFrame, *, name: str, target: str,
                      source_tags: dict[str, Any], record: dict[str, Any],
                      digest: str | None = None) -> None:
    """The training frame as an MLflow dataset (its source: the tables and versions it came
    from; its digest: the first :data:`DATASET_DIGEST_CHARS` hex digits of `digest`, Braid's
    canonical frame digest, else MLflow's own), and `record` (feature service, Delta
    versions, full digests ...) as `training_set.json`."""
    source = CodeDatasetSource(tags={k: str(v) for k, v in source_tags.items()})
    dataset = TrainingFrame(frame, source=source, targets=target, name=name,
                            digest=None if digest is None else digest[:DATASET_DIGEST_CHARS])
    mlflow.log_input(dataset, context="training")
    mlflow.log_dict(record, "training_set.json")


def log_predictions(times: np.ndarray, keys: np.ndarray, y: np.ndarray,
                    scores: dict[str, np.ndarray]) -> None:
    """The test period's labels and every model's probability, `test_predictions.csv`, so any
    metric can be recomputed from the run alone."""
    table = pd.DataFrame({"time_ms": times, "key": keys, "label": y,
                          **{f"p_{name}": p for name, p in scores.items()}})
    mlflow.log_text(table.to_csv(index=False), "test_predictions.csv")


def log_model(model: xgb.XGBClassifier, x_example: pd.DataFrame, registered_name: str
              ) -> tuple[ModelInfo, str]:
    """`mlflow.xgboost.log_model` with the signature (input: the contract's columns, float64;
    output: the positive class probability) and an input example; registered under
    `registered_name`. Returns the model info and the new registry version."""
    complete = x_example.dropna()
    example = (complete if len(complete) else x_example.fillna(0.0)).head(5)
    probability = pd.Series(model.predict_proba(example)[:, 1], name="probability")
    info = mlflow.xgboost.log_model(
        model, name="model", signature=infer_signature(example, probability),
        input_example=example, registered_model_name=registered_name,
        model_format="ubj",
        # given, not inferred: inference loads the model in a subprocess (seconds)
        pip_requirements=mlflow.xgboost.get_default_pip_requirements(),
    )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"model logged but not registered under {registered_name}")
    return info, str(version)
