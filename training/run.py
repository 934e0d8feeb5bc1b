"""One training run, whichever the pipeline: split, fit, evaluate, log, register, promote.

A pipeline module (`markets_model`, `sensors_model`) builds a :class:`PreparedData` (contract
columns, labels, times, its baselines, its dataset description); this module does the rest the
same way for both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import structlog
import xgboost as xgb
from mlflow.tracking import MlflowClient

from features.model_contract import FEATURE_SERVICES, MODEL_NAMES, Pipeline
from serving.settings import MlflowSettings
from training import classifier, plots
from training.evaluation import classification_metrics, majority_baseline
from training.frame_digest import frame_digest
from training.mlflow_logging import git_tags, log_model, log_predictions, log_training_data
from training.progress import report
from training.promotion import promote
from training.results import TrainResult
from training.settings import TrainingSettings
from training.splits import TimeSplit, time_split

log = structlog.get_logger(__name__)

#: Baselines: given the split, each one's probability on the test rows.
Baselines = Callable[[TimeSplit], dict[str, np.ndarray]]


@dataclass
class PreparedData:
    """A pipeline's labelled rows, ready to split (one row per entity and time)."""

    pipeline: Pipeline
    #: The contract's columns, float64, in the feature service's order.
    features: pd.DataFrame
    labels: np.ndarray
    #: Event time of each row, epoch ms.
    times: np.ndarray
    #: Entity of each row (pair, client).
    keys: np.ndarray
    #: Split gap, ms (markets: horizon x candle length).
    gap_ms: int
    baselines: Baselines
    #: Facts about where the rows came from: logged as the dataset source's tags.
    source_tags: dict[str, Any]
    #: The training set's record, logged as `training_set.json`.
    record: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    #: Contract columns the model must not learn from (blanked to NaN for the fit).
    unused_columns: tuple[str, ...] = ()
    #: Rows whose target moved (markets: a non-zero return), for the directional accuracy.
    moved: np.ndarray | None = None
    #: What the constant train-rate baseline is called (sensors: `never_alert`).
    majority_name: str = "majority"
    #: Seconds spent building the rows (logged as `seconds_<name>` metrics).
    seconds: dict[str, float] = field(default_factory=dict)


def _experiment(pipeline: Pipeline, mlflow_settings: MlflowSettings) -> str:
    return (mlflow_settings.experiment_markets if pipeline == "markets"
            else mlflow_settings.experiment_sensors)


def _fit(data: PreparedData, parts: TimeSplit, settings: TrainingSettings
         ) -> xgb.XGBClassifier:
    """The classifier on the train part (early stopping on the validation part), the unused
    columns blanked in the parts' own copies (not in a copy of every row)."""
    blanked = list(data.unused_columns)

    def part(rows: np.ndarray) -> pd.DataFrame:
        # `take` copies the rows and owns them; `iloc[rows]` copies too but stays marked as a
        # possible view, so the assignment below would raise SettingWithCopyWarning
        frame = data.features.take(rows)
        if blanked:
            frame.loc[:, blanked] = np.nan
        return frame

    return classifier.fit(part(parts.train), data.labels[parts.train],
                          part(parts.validation), data.labels[parts.validation], settings)


@dataclass
class Scored:
    """A fitted model and its scores: what a run logs, before it is logged."""

    model: xgb.XGBClassifier
    parts: TimeSplit
    #: Every metric the run logs (model, baselines, validation, rows, `seconds_*`).
    metrics: dict[str, float]
    #: Each model's and baseline's probability on the test rows.
    scores: dict[str, np.ndarray]
    #: Each part's rows, positives, first and last time (`train_rows`, `test_start_ms`, ...).
    parts_facts: dict[str, int]


def fit_and_score(data: PreparedData, settings: TrainingSettings) -> Scored:
    """Split, fit, and score the model and the baselines on the test period (nothing logged):
    the same data, settings and seed give the same model and metrics."""
    parts = time_split(data.times, gap=data.gap_ms,
                       validation_fraction=settings.validation_fraction,
                       test_fraction=settings.test_fraction)
    x, y = data.features, data.labels
    seconds = {f"seconds_{k}": v for k, v in data.seconds.items()}
    started = time.perf_counter()
    report(f"fit: {len(parts.train):,} training rows, {len(parts.validation):,} for early "
           "stopping")
    model = _fit(data, parts, settings)
    seconds["seconds_fit"] = time.perf_counter() - started
    report(f"evaluation on the test period ({len(parts.test):,} rows) against the baselines")
    x_test, y_test = x.iloc[parts.test], y[parts.test]
    moved_test = None if data.moved is None else data.moved[parts.test]
    scores = {"model": model.predict_proba(x_test)[:, 1],
              data.majority_name: majority_baseline(y[parts.train], len(parts.test)),
              **data.baselines(parts)}
    metrics: dict[str, float] = {}
    for name, p in scores.items():
        prefix = "test" if name == "model" else f"{name}_test"
        for metric, value in classification_metrics(y_test, p, moved_test).items():
            metrics[f"{prefix}_{metric}"] = value
    p_val = model.predict_proba(x.iloc[parts.validation])[:, 1]
    for metric, value in classification_metrics(y[parts.validation], p_val).items():
        metrics[f"validation_{metric}"] = value
    metrics["best_rounds"] = float(classifier.best_rounds(model))
    metrics.update(seconds)
    parts_facts = {
        f"{name}_{what}": value
        for name, idx in (("train", parts.train), ("validation", parts.validation),
                          ("test", parts.test))
        for what, value in (("rows", len(idx)), ("start_ms", int(data.times[idx].min())),
                            ("end_ms", int(data.times[idx].max())),
                            ("positives", int(y[idx].sum())))
    }
    metrics.update({k: float(v) for k, v in parts_facts.items() if not k.endswith("_ms")})
    return Scored(model=model, parts=parts, metrics=metrics, scores=scores,
                  parts_facts=parts_facts)


#: The dataset frame's row keys (`dataset_frame`).
DATASET_KEYS = ("key", "time_ms")


def dataset_frame(data: PreparedData) -> pd.DataFrame:
    """The rows the model is fitted and scored on, as logged (the MLflow dataset): key,
    time_ms, the contract's columns, label."""
    return pd.concat([pd.DataFrame({"key": data.keys, "time_ms": data.times}),
                      data.features.reset_index(drop=True),
                      pd.DataFrame({"label": data.labels})], axis=1)


def train_and_register(data: PreparedData, settings: TrainingSettings,
                       tracking_uri: str | None = None) -> TrainResult:
    """Fit, evaluate against the baselines on the test period, log everything, register the
    model, decide its alias. Returns the run's :class:`TrainResult`."""
    mlflow_settings = MlflowSettings()
    uri = tracking_uri or mlflow_settings.resolved_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(_experiment(data.pipeline, mlflow_settings))

    scored = fit_and_score(data, settings)
    model, parts, metrics, scores = scored.model, scored.parts, scored.metrics, scored.scores
    x, y = data.features, data.labels
    x_test, y_test = x.iloc[parts.test], y[parts.test]
    moved_test = None if data.moved is None else data.moved[parts.test]
    service = FEATURE_SERVICES[data.pipeline]
    name = MODEL_NAMES[data.pipeline]
    columns = list(x.columns)
    frame = dataset_frame(data)
    digest = frame_digest(frame, DATASET_KEYS)
    record = {**data.record, "dataset_digest": digest, "dataset_rows": len(frame)}
    report("the MLflow run: parameters, metrics, data, plots, the model")
    with mlflow.start_run() as run:
        mlflow.set_tags({**git_tags(), "pipeline": data.pipeline, "feature_service": service,
                         "model_name": name})
        mlflow.log_params({
            **data.params, **settings.model_dump(), "feature_service": service,
            "gap_ms": data.gap_ms, "n_features": len(columns),
            "unused_columns": ",".join(data.unused_columns) or "-",
            **{k: v for k, v in scored.parts_facts.items() if k.endswith("_ms")},
        })
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"feature_service": service, "features": columns},
                        "feature_service.json")
        log_training_data(frame, name=f"{service}-training-set", target="label",
                          source_tags=data.source_tags, record=record, digest=digest)
        log_predictions(data.times[parts.test], data.keys[parts.test], y_test, scores)
        for figure, file in (
            (plots.feature_importance(columns, classifier.importance(model)),
             "plots/feature_importance.png"),
            (plots.roc(y_test, scores), "plots/roc.png"),
            (plots.predicted_vs_actual(y_test, scores["model"]), "plots/predicted_vs_actual.png"),
        ):
            mlflow.log_figure(figure, file)
            plt.close(figure)
        _, version = log_model(model, x_test, name)
        run_id = run.info.run_id
    report(f"promotion of {name} v{version}: scored against the champion on the same rows")
    decision = promote(data.pipeline, version, x_test, y_test,
                       metric=settings.promotion_metric, margin=settings.promotion_margin,
                       run_id=run_id, client=MlflowClient(uri, uri), moved=moved_test)
    log.info("trained", pipeline=data.pipeline, run_id=run_id, version=version,
             alias=decision.alias, **{k: round(v, 4) for k, v in metrics.items()
                                      if k.endswith(("roc_auc", "accuracy"))})
    return TrainResult(run_id=run_id, model_name=name, version=version, metrics=metrics,
                       decision=decision, data=json.loads(json.dumps(record, default=str)))
