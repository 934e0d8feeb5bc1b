"""One module per service; `SPECS` maps a service name to the function building the specs of
its processes (one, or one per Kafka node).

To add a service (Redis, MLflow, Prefect ...): write `infra/services/<name>.py` with a
`spec(settings) -> ServiceSpec`, add it here (`_single(<name>.spec)`) and to
`infra.settings.KNOWN_SERVICES`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from infra.services import broker, feast_ui, gcs, mlflow, prefect, prefect_flows, redis, spark
from infra.services.base import ServiceSpec
from infra.settings import StackSettings

SpecsOf = Callable[[StackSettings], list[ServiceSpec]]


def _single(spec: Callable[[StackSettings], ServiceSpec]) -> SpecsOf:
    return lambda settings: [spec(settings)]


SPECS: dict[str, SpecsOf] = {
    broker.NAME: broker.specs,
    gcs.NAME: _single(gcs.spec),
    redis.NAME: _single(redis.spec),
    mlflow.NAME: _single(mlflow.spec),
    prefect.NAME: _single(prefect.spec),
    prefect_flows.NAME: _single(prefect_flows.spec),
    feast_ui.NAME: _single(feast_ui.spec),
    spark.MASTER: _single(spark.master_spec),
    spark.WORKERS[0]: _single(partial(spark.worker_spec, index=1)),
    spark.WORKERS[1]: _single(partial(spark.worker_spec, index=2)),
}


def process_names(service: str, settings: StackSettings) -> list[str]:
    """The PID-file names of a service's processes, without building their specs (which may
    need binaries that are not installed): the broker's nodes, else the service's own name."""
    return broker.process_names(settings) if service == broker.NAME else [service]


__all__ = ["SPECS", "ServiceSpec", "process_names"]
