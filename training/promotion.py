"""Promotion by evaluation: a new version becomes `champion` only if it beats the current one.

Both models are loaded from the registry and scored on the candidate's test set (the same rows,
the same labels); the new version gets the `champion` alias when it beats the champion by more
than `margin` on the chosen metric (default ROC AUC; for a loss such as log loss, lower wins),
else `challenger`. The first version ever is champion; so is a version whose champion cannot be
scored on its test set (its signature lacks a column of it). The decision and both scores are
logged on the candidate's run (tags `promotion.*`, metrics `promotion_*`). Nothing is random:
the same data and seed give the same scores, hence the same decision.
"""

from __future__ import annotations

import math

import mlflow.xgboost
import numpy as np
import pandas as pd
import structlog
from mlflow.exceptions import MlflowException
from mlflow.models import get_model_info
from mlflow.tracking import MlflowClient

from features.model_contract import CHALLENGER, CHAMPION, MODEL_NAMES, Pipeline
from training.evaluation import classification_metrics, higher_is_better
from training.results import PromotionDecision

log = structlog.get_logger(__name__)


def current_champion(client: MlflowClient, name: str) -> str | None:
    """The version holding `champion`, or None (no model, or no alias yet)."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def score(uri: str, x_test: pd.DataFrame, y_test: np.ndarray, metric: str,
          moved: np.ndarray | None = None) -> float:
    """`metric` of the model at `uri` on (x_test, y_test), columns as its signature lists."""
    signature = get_model_info(uri).signature
    columns = signature.inputs.input_names() if signature is not None else list(x_test.columns)
    missing = [c for c in columns if c not in x_test.columns]
    if missing:
        raise KeyError(f"{uri} needs columns the test set lacks: {missing}")
    model = mlflow.xgboost.load_model(uri)
    p = model.predict_proba(x_test[columns].astype("float64"))[:, 1]
    metrics = classification_metrics(y_test, p, moved)
    if metric not in metrics:
        raise ValueError(f"{metric} cannot be computed here (directional_accuracy needs the "
                         "rows whose target moved: markets only)")
    return metrics[metric]


def decide(candidate: float, champion: float | None, metric: str, margin: float) -> bool:
    """True when `candidate` beats `champion` by more than `margin` (no champion: True)."""
    if champion is None or math.isnan(champion):
        return True
    if math.isnan(candidate):
        return False
    gain = candidate - champion if higher_is_better(metric) else champion - candidate
    return gain > margin


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
    moved: np.ndarray | None = None,
) -> PromotionDecision:
    """Score `version` and the current champion on (x_test, y_test); move the aliases.

    `moved` (rows whose target moved) is needed only for `directional_accuracy`.
    """
    higher_is_better(metric)  # unknown metric: ValueError before anything moves
    client = client or MlflowClient()
    name = MODEL_NAMES[pipeline]
    candidate = score(f"models:/{name}/{version}", x_test, y_test, metric, moved)
    champion_version = current_champion(client, name)
    champion: float | None = None
    if champion_version is None:
        reason = "no champion yet"
    elif champion_version == str(version):
        reason = "already champion"
    else:
        try:
            champion = score(f"models:/{name}/{champion_version}", x_test, y_test, metric, moved)
            verb = "beats" if decide(candidate, champion, metric, margin) else "does not beat"
            reason = (f"{metric} {candidate:.6f} {verb} champion v{champion_version}'s "
                      f"{champion:.6f} by more than {margin}")
        except KeyError as error:
            reason = f"champion v{champion_version} cannot be scored on this test set: {error}"
    promoted = champion is None or decide(candidate, champion, metric, margin)
    alias = CHAMPION if promoted else CHALLENGER
    client.set_registered_model_alias(name, alias, str(version))
    decision = PromotionDecision(alias=alias, metric=metric, candidate_score=candidate,
                                 champion_score=champion, champion_version=champion_version,
                                 margin=margin, reason=reason)
    if run_id is not None:
        _log_on_run(client, run_id, decision)
    log.info("promotion", model=name, version=version, alias=alias, metric=metric,
             candidate=candidate, champion=champion, champion_version=champion_version)
    return decision


def _log_on_run(client: MlflowClient, run_id: str, decision: PromotionDecision) -> None:
    tags = {"promotion.decision": decision.alias, "promotion.metric": decision.metric,
            "promotion.margin": str(decision.margin), "promotion.reason": decision.reason,
            "promotion.champion_version": decision.champion_version or ""}
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.log_metric(run_id, "promotion_candidate_score", decision.candidate_score)
    if decision.champion_score is not None:
        client.log_metric(run_id, "promotion_champion_score", decision.champion_score)
