"""`materialize`: the offline tables' latest rows into Feast's online store.

Feast's own materialization (`FeatureStore.materialize_incremental`, or `materialize` over an
explicit window), for the pipeline's feature views whose Delta table exists (a view over a table
no backfill wrote yet is skipped and named in the log). Re-running it writes the same rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

from deltalake import DeltaTable
from feast import FeatureView
from prefect import flow, task
from prefect.logging import get_run_logger

from orchestration.days import as_utc
from orchestration.errors import FlowInputError
from orchestration.run_logging import forward_logs_to_prefect
from orchestration.settings import FlowSettings
from serving.consistency import PIPELINE_VIEWS
from serving.store import open_store


def _table(view: FeatureView) -> str:
    return str(getattr(view.batch_source, "path", ""))


@task(retries=2, retry_delay_seconds=20, task_run_name="materialize {pipeline} to {end}")
def materialize_views(pipeline: str, start: datetime | None, end: datetime, profile: str,
                      repo: str) -> dict[str, int]:
    """Materialize; returns the Delta version of each table read."""
    forward_logs_to_prefect()
    logger = get_run_logger()
    store = open_store(profile, repo)
    views = [v for v in store.list_feature_views() if v.name.startswith(PIPELINE_VIEWS[pipeline])]
    ready = [v for v in views if DeltaTable.is_deltatable(_table(v))]
    for view in sorted(set(views) - set(ready), key=lambda v: v.name):
        logger.warning("skipping %s: no Delta table at %s yet", view.name, _table(view))
    if not ready:
        raise FlowInputError(f"no {pipeline} feature view has a Delta table yet in {repo}")
    names = sorted(v.name for v in ready)
    versions = {_table(v): DeltaTable(_table(v)).version() for v in ready}
    logger.info("materializing %s up to %s from tables %s", names, end.isoformat(), versions)
    try:
        if start is None:
            store.materialize_incremental(end_date=end, feature_views=names)
        else:
            store.materialize(start_date=start, end_date=end, feature_views=names)
    except Exception as error:
        raise FlowInputError(f"materialize {names} {start}..{end} failed: {error}") from error
    return versions


@flow(name="materialize", log_prints=True)
def materialize(pipeline: str = "markets", start: datetime | None = None,
                end: datetime | None = None, profile: str | None = None,
                repo: str | None = None) -> dict[str, int]:
    """Load the online store from the offline tables: incrementally up to `end` (default now),
    or the window `[start, end)` when `start` is given (a first load, or a re-load)."""
    forward_logs_to_prefect()
    if pipeline not in PIPELINE_VIEWS:
        raise FlowInputError(f"unknown pipeline {pipeline!r} (markets or sensors)")
    settings = FlowSettings()
    upto = as_utc(end) if end else datetime.now(UTC)
    first = as_utc(start) if start else None
    return materialize_views(pipeline, first, upto, profile or settings.feast_profile,
                             repo or settings.feast_repo)
