"""`consistency`: the online/offline report of `braid consistency`; the run fails below the
threshold, after emitting `braid.consistency.below-threshold` (which triggers `retrain`)."""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from orchestration.days import day_range, utc_midnight
from orchestration.errors import FlowInputError
from orchestration.events import CONSISTENCY_BELOW_THRESHOLD, emit_check_event
from orchestration.run_logging import forward_logs_to_prefect
from orchestration.settings import FlowSettings
from serving.consistency import ConsistencyReport, consistency_report
from serving.consistency_output import text_table
from serving.store import ServingError, open_store


class ConsistencyBelowThreshold(RuntimeError):
    """The online store serves values the batch layer does not compute (too many of them)."""


@task(retries=1, retry_delay_seconds=10, task_run_name="consistency {pipeline} {start}..{end}")
def report(pipeline: str, start: date, end: date, profile: str, repo: str) -> ConsistencyReport:
    forward_logs_to_prefect()
    try:
        return consistency_report(open_store(profile, repo), utc_midnight(start),
                                  utc_midnight(end), pipeline)
    except ServingError as error:
        raise FlowInputError(f"consistency of {pipeline} {start}..{end}: {error}") from error


@flow(name="consistency", log_prints=True)
def consistency(pipeline: str = "markets", start: date | None = None, end: date | None = None,
                threshold: float | None = None, profile: str | None = None,
                repo: str | None = None) -> float:
    """Compare the online store with the offline tables over `[start, end)` (UTC days; default
    yesterday); returns the match rate, fails when it is below `threshold`."""
    forward_logs_to_prefect()
    settings = FlowSettings()
    first, last = day_range(start, end)
    limit = settings.consistency_threshold if threshold is None else threshold
    result = report(pipeline, first, last, profile or settings.feast_profile,
                    repo or settings.feast_repo)
    table = text_table(result)
    create_markdown_artifact(key=f"consistency-{pipeline}", markdown=f"```\n{table}\n```",
                             description=f"{pipeline} {first}..{last}")
    logger = get_run_logger()
    logger.info("%s", table)
    logger.info("match rate %.6f over %s values (threshold %.6f)", result.match_rate,
                result.compared, limit)
    if result.match_rate < limit:
        # retrain over the checked range and the training window before it
        emit_check_event(CONSISTENCY_BELOW_THRESHOLD, pipeline,
                         first - timedelta(days=settings.training_days - 1), last,
                         {"match_rate": result.match_rate, "threshold": limit})
        raise ConsistencyBelowThreshold(
            f"{pipeline} match rate {result.match_rate:.6%} over {first}..{last} is below "
            f"{limit:.6%}")
    return result.match_rate
