"""Figures logged with a run: feature importance, ROC curves, predicted vs actual (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def feature_importance(names: list[str], gains: dict[str, float], top: int = 25) -> Figure:
    """Total gain per feature (XGBoost's `get_score(importance_type="total_gain")`)."""
    ranked = sorted(((gains.get(n, 0.0), n) for n in names), reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.28 * len(ranked))))
    ax.barh([n for _, n in ranked], [g for g, _ in ranked])
    ax.set_xlabel("total gain")
    ax.set_title("feature importance")
    fig.tight_layout()
    return fig


def roc(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """ROC curve of each model / baseline on the test period."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        if 0 < int(np.sum(y)) < len(y):
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, test period")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def predicted_vs_actual(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Figure:
    """Mean predicted probability against the observed positive rate per probability decile,
    with the number of rows per bin."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    used = np.unique(which)
    mean_p = np.array([p[which == b].mean() for b in used])
    rate = np.array([y[which == b].mean() for b in used])
    count = np.array([(which == b).sum() for b in used])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle=":", color="grey")
    top.plot(mean_p, rate, marker="o")
    top.set_ylabel("observed positive rate")
    top.set_title("predicted vs actual, test period")
    bottom.bar(mean_p, count, width=0.02)
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("rows")
    fig.tight_layout()
    return fig
