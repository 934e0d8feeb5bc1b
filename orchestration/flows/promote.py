"""`promote`: the champion/challenger decision for a registered markets model version.

Rebuilds the candidate's test period from its MLflow run (the training range, pairs, horizon
and split fractions it logged, the same feature service through Feast), then lets
`training.promotion.promote` score it and the current champion on those rows and move the
aliases. The training flow already decides once; this flow re-decides on demand (after a
champion was changed by hand, or with another metric or margin). The same tables and version
give the same decision.
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.logging import get_run_logger

from features.model_contract import FEATURE_SERVICES, MODEL_NAMES
from orchestration.errors import FlowInputError
from orchestration.run_logging import forward_logs_to_prefect
from orchestration.settings import FlowSettings
from serving.settings import MlflowSettings


def latest_version(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise FlowInputError(f"no version of {name} is registered")
    return str(max(int(v.version) for v in versions))


@task(retries=2, retry_delay_seconds=10, task_run_name="promote {pipeline} v{version}")
def decide(pipeline: str, version: str, metric: str | None, margin: float | None, profile: str,
           repo: str, tracking_uri: str) -> dict[str, Any]:
    from serving.store import open_store
    from training.markets_model import prepare, service_columns
    from training.promotion import promote as promote_version
    from training.splits import time_split
    from training.training_sets import training_set

    forward_logs_to_prefect()
    client = MlflowClient(tracking_uri, tracking_uri)
    name = MODEL_NAMES[pipeline]
    run_id = client.get_model_version(name, version).run_id
    if run_id is None:
        raise FlowInputError(f"{name} v{version} has no MLflow run to take its test period from")
    params = client.get_run(run_id).data.params
    try:
        store = open_store(profile, repo)
        service = FEATURE_SERVICES[pipeline]
        ts = training_set(service, start=params["start"], end=params["end"],
                          pairs=params["pairs"].split(","), store=store)
        data = prepare(ts, service_columns(store, service), int(params["horizon"]), {})
        parts = time_split(data.times, gap=data.gap_ms,
                           validation_fraction=float(params["validation_fraction"]),
                           test_fraction=float(params["test_fraction"]))
        decision = promote_version(
            "markets", version, data.features.iloc[parts.test], data.labels[parts.test],
            metric=metric or params["promotion_metric"],
            margin=float(params["promotion_margin"]) if margin is None else margin,
            run_id=run_id, client=client,
            moved=None if data.moved is None else data.moved[parts.test])
    except (KeyError, ValueError) as error:
        raise FlowInputError(f"promotion of {name} v{version} (run {run_id}, "
                             f"{params.get('start')}..{params.get('end')}): {error}") from error
    return decision.to_dict()


@flow(name="promote", log_prints=True)
def promote(pipeline: str = "markets", version: int | None = None, metric: str | None = None,
            margin: float | None = None, profile: str | None = None,
            repo: str | None = None) -> dict[str, Any]:
    """Decide whether markets model `version` (default: the latest registered) becomes
    `champion`, on its own test period (sensors versions are decided when trained)."""
    forward_logs_to_prefect()
    if pipeline != "markets":
        raise FlowInputError(f"promote re-decides markets versions; {pipeline!r} versions are "
                             "decided by their training run (train/sensors-daily)")
    settings = FlowSettings()
    tracking_uri = MlflowSettings().resolved_tracking_uri()
    client = MlflowClient(tracking_uri, tracking_uri)
    chosen = str(version) if version is not None else latest_version(client,
                                                                     MODEL_NAMES[pipeline])
    decision = decide(pipeline, chosen, metric, margin, profile or settings.feast_profile,
                      repo or settings.feast_repo, tracking_uri)
    get_run_logger().info("%s v%s -> %s: %s", MODEL_NAMES[pipeline], chosen,
                          decision["alias"], decision["reason"])
    return decision
