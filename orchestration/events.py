"""The Prefect events Braid's checks emit, and the triggers that start `retrain` on them.

A check that crosses its threshold emits an event about the pipeline (resource
`braid.pipeline.<pipeline>`), with the day range to retrain on in its payload. The `retrain`
deployments carry a `DeploymentEventTrigger` per event (a Prefect automation created when the
deployments are served), which starts a run with the payload's range as parameters. To add a
trigger: emit an event from a flow or any process (`prefect.events.emit_event`, or
`prefect event emit` from a shell) and add a `retrain_trigger("<event name>", pipeline)` to the
deployment in `orchestration/deployments.py`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect.events import DeploymentEventTrigger, emit_event

DRIFT_DETECTED = "braid.drift.detected"
CONSISTENCY_BELOW_THRESHOLD = "braid.consistency.below-threshold"
RETRAIN_EVENTS = (DRIFT_DETECTED, CONSISTENCY_BELOW_THRESHOLD)


def pipeline_resource(pipeline: str) -> dict[str, str]:
    return {"prefect.resource.id": f"braid.pipeline.{pipeline}",
            "prefect.resource.name": pipeline}


def emit_check_event(event: str, pipeline: str, start: date, end: date,
                     facts: dict[str, Any]) -> None:
    """Say that a check crossed its threshold; `start`/`end`: the range to retrain on."""
    emit_event(event=event, resource=pipeline_resource(pipeline),
               payload={"start": start.isoformat(), "end": end.isoformat(), **facts})


def retrain_trigger(event: str, pipeline: str) -> DeploymentEventTrigger:
    """Run the deployment when `event` is emitted about `pipeline`, over the event's range."""
    return DeploymentEventTrigger(
        name=f"{event} ({pipeline})",
        expect={event},
        match={"prefect.resource.id": f"braid.pipeline.{pipeline}"},
        parameters={"start": "{{ event.payload.start }}", "end": "{{ event.payload.end }}"},
    )
