"""One module per service; `SPECS` maps a service name to the function building its spec.

To add a service (Redis, MLflow, Prefect ...): write `infra/services/<name>.py` with a
`spec(settings) -> ServiceSpec`, add it here and to `infra.settings.KNOWN_SERVICES`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from infra.services import broker, feast_ui, gcs, mlflow, prefect, prefect_flows, redis, spark
from infra.services.base import ServiceSpec
from infra.settings import StackSettings

SPECS: dict[str, Callable[[StackSettings], ServiceSpec]] = {
    broker.NAME: broker.spec,
    gcs.NAME: gcs.spec,
    redis.NAME: redis.spec,
    mlflow.NAME: mlflow.spec,
    prefect.NAME: prefect.spec,
    prefect_flows.NAME: prefect_flows.spec,
    feast_ui.NAME: feast_ui.spec,
    spark.MASTER: spark.master_spec,
    spark.WORKERS[0]: partial(spark.worker_spec, index=1),
    spark.WORKERS[1]: partial(spark.worker_spec, index=2),
}

__all__ = ["SPECS", "ServiceSpec"]
