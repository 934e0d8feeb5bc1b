"""`drift`: population stability index of the last day's features against the training
window's, per feature; a feature above the threshold emits `braid.drift.detected` (which
triggers `retrain`). Both sets are the pipeline's feature service read through Feast
(`training.training_sets.training_set`), as training reads them."""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from features.model_contract import FEATURE_SERVICES
from orchestration.days import day_range
from orchestration.errors import FlowInputError
from orchestration.events import DRIFT_DETECTED, emit_check_event
from orchestration.psi import psi_per_feature
from orchestration.run_logging import forward_logs_to_prefect
from orchestration.settings import FlowSettings
from serving.store import ServingError, open_store


@task(retries=1, retry_delay_seconds=10,
      task_run_name="psi {pipeline} {day} vs {reference_start}..{day}")
def feature_psi(pipeline: str, day: date, reference_start: date, keys: list[str] | None,
                profile: str, repo: str) -> dict[str, float]:
    from training.training_sets import training_set

    forward_logs_to_prefect()
    service = FEATURE_SERVICES[pipeline]
    store = open_store(profile, repo)
    key_args = {"pairs": keys} if pipeline == "markets" else {"clients": keys}
    try:
        reference = training_set(service, start=reference_start.isoformat(),
                                 end=day.isoformat(), store=store, **key_args)  # type: ignore[arg-type]
        current = training_set(service, start=day.isoformat(),
                               end=(day + timedelta(days=1)).isoformat(), store=store,
                               **key_args)  # type: ignore[arg-type]
    except ServingError as error:
        raise FlowInputError(f"drift of {pipeline} on {day} (reference {reference_start}.."
                             f"{day}): {error}") from error
    features = [c for c in reference.frame.columns if "__" in c]
    return psi_per_feature(reference.frame, current.frame, features)


@flow(name="drift", log_prints=True)
def drift(pipeline: str = "markets", day: date | None = None,
          reference_days: int | None = None, keys: list[str] | None = None,
          threshold: float | None = None, profile: str | None = None,
          repo: str | None = None) -> dict[str, float]:
    """PSI per feature of `day` (default yesterday) against the `reference_days` before it
    (default the training window); emits `braid.drift.detected` when any exceeds `threshold`."""
    forward_logs_to_prefect()
    if pipeline not in FEATURE_SERVICES:
        raise FlowInputError(f"unknown pipeline {pipeline!r} (markets or sensors)")
    settings = FlowSettings()
    first, _ = day_range(day, None)
    span = reference_days or settings.training_days
    limit = settings.psi_threshold if threshold is None else threshold
    if keys is None and pipeline == "markets":
        keys = settings.pairs
    values = feature_psi(pipeline, first, first - timedelta(days=span), keys,
                         profile or settings.feast_profile, repo or settings.feast_repo)
    drifted = {name: value for name, value in values.items() if value > limit}
    create_table_artifact(key=f"drift-{pipeline}", table=[
        {"feature": k, "psi": round(v, 6), "drifted": v > limit} for k, v in values.items()],
        description=f"PSI of {first} against the {span} days before (threshold {limit})")
    logger = get_run_logger()
    logger.info("PSI per feature of %s vs %s days before: %s", first, span,
                {k: round(v, 4) for k, v in values.items()})
    if drifted:
        logger.warning("drift above %s: %s; requesting a retrain", limit, sorted(drifted))
        emit_check_event(DRIFT_DETECTED, pipeline, first - timedelta(days=span - 1),
                         first + timedelta(days=1), {"drifted": drifted, "threshold": limit})
    return values
