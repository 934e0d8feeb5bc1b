"""The XGBoost binary classifier both pipelines train (deterministic: fixed seed, fixed threads)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from training import progress
from training.settings import TrainingSettings


def fit(x_train: pd.DataFrame, y_train: np.ndarray, x_val: pd.DataFrame, y_val: np.ndarray,
        settings: TrainingSettings) -> xgb.XGBClassifier:
    """Fit on the train part, early stopping on the validation part's log loss.

    Columns that are all NaN in `x_train` (e.g. timestamps the contract carries but the model
    must not learn from) get no split, so their values never change a prediction.
    """
    model = xgb.XGBClassifier(
        n_estimators=settings.n_estimators,
        max_depth=settings.max_depth,
        learning_rate=settings.learning_rate,
        subsample=settings.subsample,
        colsample_bytree=settings.colsample_bytree,
        early_stopping_rounds=settings.early_stopping_rounds,
        eval_metric="logloss",
        objective="binary:logistic",
        tree_method="hist",
        random_state=settings.seed,
        n_jobs=settings.nthread,
        callbacks=[progress.BoostingRounds(settings.n_estimators)] if progress.active() else None,
    )
    model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
    return model


def importance(model: xgb.XGBClassifier) -> dict[str, float]:
    """Total gain per feature the trees use (features never split on are absent)."""
    scores = model.get_booster().get_score(importance_type="total_gain")
    return {k: float(v) for k, v in scores.items() if isinstance(v, int | float)}


def best_rounds(model: xgb.XGBClassifier) -> int:
    """Trees used for predictions (early stopping's best iteration + 1)."""
    best = getattr(model, "best_iteration", None)
    return int(best) + 1 if best is not None else int(model.n_estimators or 0)
