"""One module per service; `SPECS` maps a service name to the function building its spec.

To add a service (Redis, MLflow, Prefect ...): write `infra/services/<name>.py` with a
`spec(settings) -> ServiceSpec`, add it here and to `infra.settings.KNOWN_SERVICES`.
"""

from __future__ import annotations

from collections.abc import Callable

from infra.services import broker, gcs, mlflow, redis
from infra.services.base import ServiceSpec
from infra.settings import StackSettings

SPECS: dict[str, Callable[[StackSettings], ServiceSpec]] = {
    broker.NAME: broker.spec,
    gcs.NAME: gcs.spec,
    redis.NAME: redis.spec,
    mlflow.NAME: mlflow.spec,
}

__all__ = ["SPECS", "ServiceSpec"]
