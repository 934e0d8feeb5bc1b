"""`retrain` and `sensors-retrain`: backfill -> materialize -> train -> promote, as subflows.

The promotion decision is the training's (`training.promotion.promote`, called by the training
function on the candidate's test period): the `promote` step reports it and fails the run
when nothing was registered. A re-run over the same range writes the same tables and, with the
same data and seed, gives the same decision.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from orchestration.days import today, utc_midnight
from orchestration.flows.backfill import backfill, sensors_backfill
from orchestration.flows.materialize import materialize
from orchestration.flows.train import train
from orchestration.run_logging import forward_logs_to_prefect
from orchestration.settings import FlowSettings


def _window(start: date | None, end: date | None) -> tuple[date, date]:
    last = end or today()
    first = start or last - timedelta(days=FlowSettings().training_days)
    if last <= first:
        raise ValueError(f"end {last} must be after start {first}")
    return first, last


def _report_decision(trained: dict[str, Any]) -> dict[str, Any]:
    decision: dict[str, Any] = trained["decision"]
    get_run_logger().info(
        "promotion: %s version %s is %s (%s %.6f vs champion %s)", trained["model_name"],
        trained["version"], decision["alias"], decision["metric"],
        decision["candidate_score"], decision["champion_score"])
    return decision


@flow(name="retrain", log_prints=True)
def retrain(start: date | None = None, end: date | None = None,
            pairs: list[str] | None = None, durations: list[str] | None = None,
            inputs: list[str] | None = None, profile: str | None = None,
            repo: str | None = None) -> dict[str, Any]:
    """Markets: backfill `[start, end)` (default: the training window ending today), load the
    online store over it, train on it, and report the champion/challenger decision."""
    forward_logs_to_prefect()
    first, last = _window(start, end)
    tables = backfill(start=first, end=last, pairs=pairs, durations=durations, inputs=inputs)
    materialize(pipeline="markets", start=utc_midnight(first), end=utc_midnight(last),
                profile=profile, repo=repo)
    trained = train(pipeline="markets", start=first, end=last, pairs=pairs, profile=profile,
                    repo=repo)
    decision = _report_decision(trained)
    return {"table_versions": tables.get("table_versions"), "run_id": trained["run_id"],
            "version": trained["version"], "decision": decision, "links": trained["links"]}


@flow(name="sensors-retrain", log_prints=True)
def sensors_retrain(start: date | None = None, end: date | None = None,
                    archive: str | None = None, source: str = "simulator",
                    profile: str | None = None, repo: str | None = None) -> dict[str, Any]:
    """Sensors: backfill the window features of `[start, end)` from the archive, load the
    online store, train the alert model on `source`, report the decision."""
    forward_logs_to_prefect()
    first, last = _window(start, end)
    version = sensors_backfill(start=first, end=last, archive=archive)
    materialize(pipeline="sensors", start=utc_midnight(first), end=utc_midnight(last),
                profile=profile, repo=repo)
    trained = train(pipeline="sensors", source=source, profile=profile, repo=repo)
    decision = _report_decision(trained)
    return {"table_version": version, "run_id": trained["run_id"],
            "version": trained["version"], "decision": decision, "links": trained["links"]}
