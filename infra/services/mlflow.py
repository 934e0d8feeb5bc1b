"""MLflow tracking server: runs, model registry (aliases) and a proxied artifact store.

`mlflow server` bound to `host:mlflow_port`, its runs and registry in SQLite at
`<state>/data/mlflow/mlflow.db`, artifacts served by the server itself (`--serve-artifacts`)
from `<state>/data/mlflow/artifacts`, so clients need only the tracking URI
(`StackSettings.mlflow_tracking_uri`, the UI is the same address). Healthy when `GET /health`
answers (≈13 s after the start on an idle machine, a minute or more on a busy one). Its uvicorn
workers are in the server's process group and stop with it. MLflow's job runner is off.
"""

from __future__ import annotations

from functools import partial

from infra.health import http_ok
from infra.services.base import ServiceSpec, venv_executable
from infra.settings import StackSettings

NAME = "mlflow"


def spec(settings: StackSettings) -> ServiceSpec:
    """`mlflow server` on `mlflow_port` with a SQLite backend and a local artifact folder."""
    exe = venv_executable("mlflow", "install mlflow (pip install mlflow==3.17.2)")
    data = (settings.data_dir / "mlflow").resolve()
    artifacts = data / "artifacts"
    argv = [
        exe, "server",
        "--host", settings.host, "--port", str(settings.mlflow_port),
        "--workers", str(settings.mlflow_workers),
        "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", str(artifacts),
        "--default-artifact-root", "mlflow-artifacts:/",
    ]
    return ServiceSpec(
        name=NAME,
        argv=argv,
        host=settings.host,
        port=settings.mlflow_port,
        health=partial(http_ok, f"{settings.mlflow_tracking_uri}/health"),
        # no job runner (huey consumers for GenAI evaluation jobs): Braid submits no jobs,
        # and it costs processes, memory and a slower start and stop
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        prepare=partial(artifacts.mkdir, parents=True, exist_ok=True),
    )
