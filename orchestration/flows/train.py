"""`train`: build the training set, train, evaluate, log and register a model, and let the
promotion rule decide its alias (`training.markets_model.train_markets`,
`training.sensors_model.train_sensors`, the functions the `braid` training commands call).
The run's log links the MLflow run and the registered version."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.artifacts import create_link_artifact
from prefect.logging import get_run_logger

from orchestration.days import today
from orchestration.errors import FlowInputError
from orchestration.run_logging import forward_logs_to_prefect
from orchestration.settings import FlowSettings
from serving.settings import MlflowSettings
from training.results import TrainResult


def mlflow_links(result: TrainResult, tracking_uri: str) -> dict[str, str]:
    """The MLflow UI pages of the run and of the registered version."""
    base = tracking_uri.rstrip("/")
    experiment = MlflowClient(tracking_uri, tracking_uri).get_run(result.run_id).info.experiment_id
    return {
        "run": f"{base}/#/experiments/{experiment}/runs/{result.run_id}",
        "model_version": f"{base}/#/models/{result.model_name}/versions/{result.version}",
    }


def report_result(result: TrainResult, tracking_uri: str) -> dict[str, Any]:
    """Log the run's links, metrics and decision; a link artifact for the UI."""
    links = mlflow_links(result, tracking_uri)
    logger = get_run_logger()
    logger.info("MLflow run: %s", links["run"])
    logger.info("registered %s version %s -> %s (%s)", result.model_name, result.version,
                result.alias, result.decision.reason)
    logger.info("metrics: %s", result.metrics)
    if result.data.get("table_versions"):
        logger.info("trained on Delta table versions %s", result.data["table_versions"])
    create_link_artifact(link=links["run"], link_text=f"MLflow run {result.run_id}",
                         key="mlflow-run")
    return {**result.to_dict(), "links": links}


@task(retries=0, task_run_name="train markets {start}..{end}")
def train_markets_task(start: date, end: date, pairs: list[str], profile: str, repo: str,
                       tracking_uri: str) -> TrainResult:
    from serving.store import open_store
    from training.markets_model import train_markets

    forward_logs_to_prefect()
    try:
        return train_markets(start.isoformat(), end.isoformat(), pairs,
                             store=open_store(profile, repo), tracking_uri=tracking_uri)
    except Exception as error:
        raise FlowInputError(f"training markets on {pairs} {start}..{end} failed: "
                             f"{error}") from error


@task(retries=0, task_run_name="train sensors ({source})")
def train_sensors_task(source: str, tracking_uri: str, seed: int | None) -> TrainResult:
    from training.sensors_model import train_sensors

    forward_logs_to_prefect()
    try:
        return train_sensors(source, tracking_uri=tracking_uri, seed=seed)  # type: ignore[arg-type]
    except Exception as error:
        raise FlowInputError(f"training sensors on {source} failed: {error}") from error


@flow(name="train", log_prints=True)
def train(pipeline: str = "markets", start: date | None = None, end: date | None = None,
          pairs: list[str] | None = None, source: str = "simulator", seed: int | None = None,
          profile: str | None = None, repo: str | None = None) -> dict[str, Any]:
    """Train the pipeline's model: markets on `[start, end)` (default: the training window
    ending today) for `pairs`; sensors on `source` (simulator or skab). Registers the model
    and decides champion or challenger."""
    forward_logs_to_prefect()
    settings = FlowSettings()
    tracking_uri = MlflowSettings().resolved_tracking_uri()
    if pipeline == "markets":
        last = end or today()
        first = start or last - timedelta(days=settings.training_days)
        result = train_markets_task(first, last, pairs or settings.pairs,
                                    profile or settings.feast_profile,
                                    repo or settings.feast_repo, tracking_uri)
    elif pipeline == "sensors":
        result = train_sensors_task(source, tracking_uri, seed)
    else:
        raise FlowInputError(f"unknown pipeline {pipeline!r} (markets or sensors)")
    return report_result(result, tracking_uri)
