"""The process serving Braid's Prefect deployments (`python -m orchestration.serve`).

Started after the Prefect server: it registers every deployment of
`orchestration/deployments.py` (schedules, triggers) and runs their flow runs in subprocesses,
so `prefect deployment run 'backfill/daily'` works as soon as `braid up` returns. Prefect's
runner webserver answers `GET /health` on `prefect_flows_port` once the deployments are
registered (that is the health check). Flow runs reach MLflow at the stack's tracking URI.
SIGTERM stops it (Prefect's runner handles it: no new runs, then exit).
"""

from __future__ import annotations

import sys
from functools import partial

from infra.health import http_ok
from infra.services import prefect
from infra.services.base import ServiceSpec
from infra.services.feast_ui import prometheus_dir
from infra.settings import StackSettings

NAME = "prefect-flows"


def spec(settings: StackSettings) -> ServiceSpec:
    """`python -m orchestration.serve` against the stack's Prefect server."""
    metrics = prometheus_dir(settings, NAME)
    env = {
        **prefect.client_env(settings),
        "PREFECT_RUNNER_SERVER_ENABLE": "true",
        "PREFECT_RUNNER_SERVER_HOST": settings.host,
        "PREFECT_RUNNER_SERVER_PORT": str(settings.prefect_flows_port),
        # how often the runner asks for due runs (default 10 s): a run starts within this
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    if "mlflow" in settings.enabled_services():
        env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if "redis" in settings.enabled_services():
        env["REDIS_URL"] = settings.redis_url
    return ServiceSpec(
        name=NAME,
        argv=[sys.executable, "-m", "orchestration.serve"],
        host=settings.host,
        port=settings.prefect_flows_port,
        env=env,
        requires=(prefect.NAME,),
        prepare=partial(metrics.mkdir, parents=True, exist_ok=True),
        health=partial(http_ok, f"http://{settings.host}:{settings.prefect_flows_port}/health"),
    )
