"""Metrics of a binary classifier's probabilities on a test period, and naive baselines.

Every model and baseline is scored by the same function on the same rows, so the figures compare.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

#: Metrics and whether higher is better (promotion uses this).
METRICS: dict[str, bool] = {
    "accuracy": True,
    "roc_auc": True,
    "log_loss": False,
    "mae": False,
    "directional_accuracy": True,
    "precision": True,
    "recall": True,
}
EPS = 1e-6


def higher_is_better(metric: str) -> bool:
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}") from None


def classification_metrics(y: np.ndarray, p: np.ndarray,
                           moved: np.ndarray | None = None) -> dict[str, float]:
    """accuracy and precision/recall at 0.5, ROC AUC (nan with one class), log loss, MAE of the
    probability; with `moved` (rows whose target actually moved), the directional accuracy: the
    share of those rows whose predicted direction is right."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    hard = (p >= 0.5).astype(np.int64)
    predicted_positive = int(hard.sum())
    positives = int(y.sum())
    true_positive = int((hard & y).sum())
    out = {
        "accuracy": float(accuracy_score(y, hard)),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < positives < len(y) else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "mae": float(np.abs(p - y).mean()),
        "precision": true_positive / predicted_positive if predicted_positive else 0.0,
        "recall": true_positive / positives if positives else 0.0,
    }
    if moved is not None:
        mask = np.asarray(moved, dtype=bool)
        out["directional_accuracy"] = (float((hard[mask] == y[mask]).mean()) if mask.any()
                                       else float("nan"))
    return out


def majority_baseline(y_train: np.ndarray, n: int) -> np.ndarray:
    """The train set's positive rate for every row (its hard call is the majority class)."""
    return np.full(n, float(np.mean(y_train)))


def persistence_baseline(y_train: np.ndarray, previous_train: np.ndarray,
                         previous_test: np.ndarray) -> np.ndarray:
    """P(up | the last move was up / not up), estimated on the train part: the call is "the same
    direction again", the probability calibrated on training data."""
    previous_train = np.asarray(previous_train, dtype=np.int64)
    rates = {}
    for state in (0, 1):
        rows = previous_train == state
        rates[state] = float(np.mean(y_train[rows])) if rows.any() else float(np.mean(y_train))
    return np.where(np.asarray(previous_test, dtype=np.int64) == 1, rates[1], rates[0])
