"""Promotion by evaluation: a new version becomes `champion` only if it beats the current one.

Both models are scored on the candidate's test set (the same rows, the same labels); the new
version gets `champion` when `candidate > champion + margin` on the chosen metric (default ROC
AUC; for a loss such as log loss, lower wins), else `challenger`. The first version ever is
champion. The decision and both scores are logged on the candidate's run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from training.model_contract import Pipeline
from training.results import PromotionDecision


def promote(
    pipeline: Pipeline,
    version: str,
    x_test: pd.DataFrame,
    y_test: np.ndarray,
    *,
    metric: str = "roc_auc",
    margin: float = 0.0,
    run_id: str | None = None,
    client: MlflowClient | None = None,
) -> PromotionDecision:
    """Score `version` and the current champion on (x_test, y_test); move the aliases."""
    raise NotImplementedError("training.promotion.promote: being written (issue 12)")
