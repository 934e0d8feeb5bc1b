"""`feast ui`: Feast's web UI (feature views, services, entities, data sources) on 127.0.0.1.

Shows the registry of `feast_repo` (default: the checkout's `feature_repo/`), re-read every few
seconds, so views applied after the start appear. Healthy when `GET /` answers (≈30 s here: it
builds its registry server at start).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from infra.health import http_ok
from infra.services.base import ServiceSpec, venv_executable
from infra.settings import StackSettings

NAME = "feast-ui"
CHECKOUT_REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def prometheus_dir(settings: StackSettings, service: str) -> Path:
    """A folder of its own for Feast's metrics files.

    Importing feast points `PROMETHEUS_MULTIPROC_DIR` at a temporary folder that it removes at
    exit; a service started by `braid up` would inherit that folder, gone once `braid up`
    returns (and every flow run importing feast would crash)."""
    return (settings.data_dir / service / "prometheus").resolve()


def spec(settings: StackSettings) -> ServiceSpec:
    """`feast -c <repo> ui --host <host> --port <feast_ui_port>`."""
    exe = venv_executable("feast", "install feast (pip install 'feast[redis,duckdb]==0.67.0')")
    repo = (settings.feast_repo or CHECKOUT_REPO).resolve()
    metrics = prometheus_dir(settings, NAME)
    return ServiceSpec(
        name=NAME,
        argv=[exe, "-c", str(repo), "ui", "--host", settings.host,
              "--port", str(settings.feast_ui_port)],
        host=settings.host,
        port=settings.feast_ui_port,
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        health=partial(http_ok, f"{settings.feast_ui_url}/"),
        prepare=partial(metrics.mkdir, parents=True, exist_ok=True),
    )
