"""Every deployment of Braid's flows: name, schedule, default parameters, triggers.

`prefect deployment run '<flow>/<deployment>' --param k=v` names them; `braid up` serves them
(`orchestration/serve.py`). Scheduled runs take no parameters: each flow's defaults (yesterday,
the training window, `BRAID_FLOW_*` settings) apply. The sensors' deployments are the same flows
with `pipeline=sensors` (or the `sensors-*` flows), named `sensors-<schedule>`.
Schedules are in UTC; `BRAID_FLOW_SCHEDULES_ACTIVE=false` serves them paused (tests, laptops).
"""

from __future__ import annotations

from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from orchestration.events import RETRAIN_EVENTS, retrain_trigger
from orchestration.flows.backfill import backfill, sensors_backfill
from orchestration.flows.consistency import consistency
from orchestration.flows.drift import drift
from orchestration.flows.maintenance import offline_maintenance
from orchestration.flows.materialize import materialize
from orchestration.flows.promote import promote
from orchestration.flows.retrain import retrain, sensors_retrain
from orchestration.flows.train import train
from orchestration.settings import FlowSettings

DAILY = "daily"
HOURLY = "hourly"


def deployments(settings: FlowSettings | None = None) -> list[RunnerDeployment]:
    """The deployments, in the order `prefect deployment ls` shows them."""
    paused = not (settings or FlowSettings()).schedules_active

    def deploy(flow: Flow[..., Any], name: str, cron: str | None, pipeline: str | None = None,
               **options: Any) -> RunnerDeployment:
        # RunnerDeployment.from_flow is what `flow.to_deployment` calls, minus the async
        # dispatch that returns a coroutine inside a running event loop
        return RunnerDeployment.from_flow(
            flow, name, cron=cron, paused=paused if cron else None,
            parameters={"pipeline": pipeline} if pipeline and "pipeline" in flow.parameters
            .properties else None,
            tags=[pipeline] if pipeline else ["markets", "sensors"],
            entrypoint_type=EntrypointType.MODULE_PATH,  # importable from any directory
            **options)

    return [
        # one run at a time: two runs of the same range would write the same partitions
        deploy(backfill, DAILY, "15 0 * * *", "markets", concurrency_limit=1),
        deploy(sensors_backfill, DAILY, "20 0 * * *", "sensors", concurrency_limit=1),
        deploy(materialize, HOURLY, "5 * * * *", "markets"),
        deploy(materialize, f"sensors-{HOURLY}", "7 * * * *", "sensors"),
        deploy(train, DAILY, "45 1 * * *", "markets"),
        deploy(train, f"sensors-{DAILY}", "50 1 * * *", "sensors"),
        deploy(promote, "on-demand", None),
        deploy(retrain, DAILY, "30 2 * * *", "markets", concurrency_limit=1,
               triggers=[retrain_trigger(event, "markets") for event in RETRAIN_EVENTS]),
        deploy(sensors_retrain, DAILY, "40 2 * * *", "sensors", concurrency_limit=1,
               triggers=[retrain_trigger(event, "sensors") for event in RETRAIN_EVENTS]),
        deploy(consistency, HOURLY, "25 * * * *", "markets"),
        deploy(consistency, f"sensors-{HOURLY}", "27 * * * *", "sensors"),
        deploy(drift, DAILY, "0 2 * * *", "markets"),
        deploy(drift, f"sensors-{DAILY}", "5 2 * * *", "sensors"),
        # vacuums within the tables' retention only (BRAID_DELTA_DELETED_FILE_RETENTION)
        deploy(offline_maintenance, "weekly", "0 4 * * 0", concurrency_limit=1),
    ]
